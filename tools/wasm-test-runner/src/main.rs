//! `wasm-bindgen-test-runner`, as a workspace binary: cargo runs the front end's wasm32 test
//! binaries through it (`CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER`), and it drives headless
//! Chromium through chromedriver (`CHROMEDRIVER`).

fn main() -> anyhow::Result<()> {
    wasm_bindgen_cli::wasm_bindgen_test_runner::run_cli_with_args(std::env::args_os())
}
