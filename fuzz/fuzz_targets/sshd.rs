//! sshd and PAM login messages: any bytes are a login or `None`, never a
//! panic; what a login names (user, address) is text of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `s` lies inside `data`.
fn within(data: &[u8], s: &str) -> bool {
    let (d, p) = (data.as_ptr() as usize, s.as_ptr() as usize);
    p >= d && p + s.len() <= d + data.len()
}

fuzz_target!(|data: &[u8]| {
    if let Some(l) = ingest::syslog::sshd::parse(data) {
        assert!(
            matches!(l.action, "ssh_login" | "ssh_preauth_closed" | "pam_authentication"),
            "{}",
            l.action
        );
        if let Some(u) = l.user {
            assert!(within(data, u), "user outside the input");
        }
        if let Some(ip) = l.source_ip {
            assert!(!ip.is_empty(), "an empty source address");
            assert!(within(data, ip), "address outside the input");
        }
    }
});
