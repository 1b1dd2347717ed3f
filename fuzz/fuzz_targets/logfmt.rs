//! logfmt / key=value: any bytes give pairs or an error inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ingest::logfmt::parse(data) {
        Ok(pairs) => assert!(pairs.iter().all(|(k, _)| !k.is_empty()), "an empty key"),
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
