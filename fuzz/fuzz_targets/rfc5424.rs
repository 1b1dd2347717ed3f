//! RFC 5424 syslog: any bytes give a message or an error inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::syslog::rfc5424::parse(data) {
        Ok(m) => {
            assert!(m.facility <= 23, "facility {}", m.facility);
            assert!(m.severity <= 7, "severity {}", m.severity);
            assert!(m.version >= 1);
            assert!(m.msg.len() <= data.len());
            for sd in &m.structured_data {
                assert!(!sd.id.is_empty());
                assert!(sd.params.iter().all(|(k, _)| !k.is_empty()));
            }
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
