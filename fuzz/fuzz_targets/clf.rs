//! Apache / nginx access logs: any bytes give a line or an error inside the
//! input; the accessors on a parsed line do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::clf::parse(data) {
        Ok(l) => {
            assert!(!l.remote_host.is_empty());
            if let Some(s) = l.status {
                assert!((100..1000).contains(&s), "status {s}");
            }
            let _ = (l.path(), l.query(), l.http_version());
        }
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
