//! QRadar LEEF 1.0 / 2.0: any bytes give a message or an error inside the
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::leef::parse(data) {
        Ok(m) => {
            assert!(
                matches!(m.version, "1.0" | "2.0" | "1" | "2"),
                "version {:?}",
                m.version
            );
            assert!(
                m.attributes.iter().all(|(k, _)| !k.is_empty()),
                "an empty attribute key"
            );
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
