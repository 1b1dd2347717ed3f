//! ArcSight CEF: any bytes give a message or an error inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::cef::parse(data) {
        Ok(m) => assert!(m.extension.iter().all(|(k, _)| !k.is_empty()), "an empty extension key"),
        Err(e) => {
            assert!(
                e.position <= data.len(),
                "position {} past input of {} bytes",
                e.position,
                data.len()
            );
            let _ = e.to_string();
        }
    }
});
