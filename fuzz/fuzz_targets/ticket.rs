//! A ticket pasted by a user or given to `POST /api/mirrors`: what `parse_ticket` accepts is a
//! share's (hash sequence) ticket, and it reads back the same from its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veilshare::transport::iroh::{is_ticket, parse_ticket};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = is_ticket(text);
    if let Ok(ticket) = parse_ticket(text) {
        assert_eq!(ticket.format(), iroh_blobs::BlobFormat::HashSeq);
        let again = parse_ticket(&ticket.to_string()).expect("its own text");
        assert_eq!(again.to_string(), ticket.to_string());
    }
});
