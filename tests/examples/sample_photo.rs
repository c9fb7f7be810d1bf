//! Writes the sample phone photo (a JPEG with a GPS position, camera model, serial number and
//! time taken; see `veilshare_e2e::samples`) to the path given, for the UI test.

fn main() -> std::io::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: sample_photo OUT.jpg"))?;
    std::fs::write(path, veilshare_e2e::samples::jpeg())
}
