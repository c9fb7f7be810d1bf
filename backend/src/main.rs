//! The `veilshare` executable: a thin shell over the library's [`veilshare::cli`].

fn main() -> std::process::ExitCode {
    veilshare::cli::main()
}
