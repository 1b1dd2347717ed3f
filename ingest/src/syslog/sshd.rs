//! What sshd and PAM say about logins, read from a syslog message body
//! with nom on bytes: who, from where, and whether it worked.
//!
//! ```text
//! Failed password for [invalid user ]USER from IP port PORT ssh2
//! Accepted (password|publickey|keyboard-interactive/pam) for USER from IP port PORT ...
//! Invalid user USER from IP[ port PORT]
//! authentication failure; ... rhost=IP[ ... user=USER]
//! Connection closed by [authenticating |invalid ]user USER IP port PORT [preauth]
//! ```
//!
//! Anything else is not an sshd login message (`None`): the event keeps
//! its message and nothing is invented.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::combinator::{map, opt, rest};
use nom::sequence::{preceded, tuple};
use nom::IResult;

/// The outcome of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The login worked.
    Success,
    /// It did not.
    Failure,
}

/// One login event from sshd or PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login<'a> {
    /// What happened, as an ECS `event.action`.
    pub action: &'static str,
    /// Whether it worked.
    pub outcome: Outcome,
    /// The account named.
    pub user: Option<&'a str>,
    /// The client address.
    pub source_ip: Option<&'a str>,
    /// The client port.
    pub source_port: Option<u16>,
    /// The account does not exist.
    pub invalid_user: bool,
}

type Res<'a, T> = IResult<&'a [u8], T>;

fn word(i: &[u8]) -> Res<'_, &str> {
    nom::combinator::map_res(take_till1(|b: u8| b == b' '), std::str::from_utf8)(i)
}

/// A user name up to the last ` from ` of the line: names sent by
/// attackers may hold spaces (`invalid user  0101 from ...`).
fn user(i: &[u8]) -> Res<'_, &str> {
    let at = memchr::memmem::rfind(i, b" from ")
        .ok_or_else(|| nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::TakeUntil)))?;
    let name = std::str::from_utf8(&i[..at])
        .map_err(|_| nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Char)))?;
    Ok((&i[at..], name))
}

fn port(i: &[u8]) -> Res<'_, u16> {
    preceded(
        tag(" port "),
        nom::combinator::map_res(take_while1(|b: u8| b.is_ascii_digit()), |d: &[u8]| {
            std::str::from_utf8(d)
                .map_err(|_| ())
                .and_then(|s| s.parse::<u16>().map_err(|_| ()))
        }),
    )(i)
}

fn failed_password(i: &[u8]) -> Res<'_, Login<'_>> {
    map(
        tuple((
            tag("Failed "),
            word,
            tag(" for "),
            opt(tag("invalid user ")),
            user,
            tag(" from "),
            word,
            opt(port),
            rest,
        )),
        |(_, _method, _, invalid, user, _, ip, port, _)| Login {
            action: "ssh_login",
            outcome: Outcome::Failure,
            user: Some(user),
            source_ip: Some(ip),
            source_port: port,
            invalid_user: invalid.is_some(),
        },
    )(i)
}

fn accepted(i: &[u8]) -> Res<'_, Login<'_>> {
    map(
        tuple((
            tag("Accepted "),
            word,
            tag(" for "),
            word,
            tag(" from "),
            word,
            opt(port),
            rest,
        )),
        |(_, _method, _, user, _, ip, port, _)| Login {
            action: "ssh_login",
            outcome: Outcome::Success,
            user: Some(user),
            source_ip: Some(ip),
            source_port: port,
            invalid_user: false,
        },
    )(i)
}

fn invalid_user(i: &[u8]) -> Res<'_, Login<'_>> {
    map(
        tuple((tag("Invalid user "), user, tag(" from "), word, opt(port), rest)),
        |(_, user, _, ip, port, _)| Login {
            action: "ssh_login",
            outcome: Outcome::Failure,
            user: Some(user),
            source_ip: Some(ip),
            source_port: port,
            invalid_user: true,
        },
    )(i)
}

fn connection_closed(i: &[u8]) -> Res<'_, Login<'_>> {
    map(
        tuple((
            tag("Connection closed by "),
            opt(tuple((
                alt((tag("authenticating user "), tag("invalid user "))),
                word,
                tag(" "),
            ))),
            word,
            opt(port),
            tag(" [preauth]"),
            rest,
        )),
        |(_, user, ip, port, _, _)| Login {
            action: "ssh_preauth_closed",
            outcome: Outcome::Failure,
            user: user.map(|(_, u, _)| u),
            source_ip: Some(ip),
            source_port: port,
            invalid_user: user.is_some_and(|(kind, _, _)| kind.starts_with(b"invalid")),
        },
    )(i)
}

/// `key=value` of a PAM line, the value up to the next space (empty allowed).
fn pam_value<'a>(msg: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let at = memchr::memmem::find(msg, key)?;
    let value = &msg[at + key.len()..];
    let end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok().filter(|v| !v.is_empty())
}

fn pam_failure(i: &[u8]) -> Option<Login<'_>> {
    let r: Res<'_, &[u8]> = tag("authentication failure;")(i);
    r.ok()?;
    Some(Login {
        action: "pam_authentication",
        outcome: Outcome::Failure,
        user: pam_value(i, b" user="),
        source_ip: pam_value(i, b" rhost="),
        source_port: None,
        invalid_user: false,
    })
}

/// Reads a login event from an sshd or PAM message body, if it is one.
pub fn parse(msg: &[u8]) -> Option<Login<'_>> {
    let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
    let msg = repeated(msg).unwrap_or(msg);
    alt((failed_password, accepted, invalid_user, connection_closed))(msg)
        .ok()
        .map(|(_, login)| login)
        .or_else(|| pam_failure(msg))
}

/// The message inside syslogd's `message repeated N times: [ MSG]`.
fn repeated(msg: &[u8]) -> Option<&[u8]> {
    let rest = msg.strip_prefix(b"message repeated ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest[digits..].strip_prefix(b" times: [ ")?.strip_suffix(b"]")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// (message, action, outcome, user, ip, port, invalid user)
    #[allow(clippy::type_complexity)]
    const CASES: &[(&[u8], &str, Outcome, Option<&str>, Option<&str>, Option<u16>, bool)] = &[
        (
            b"message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
            "ssh_login",
            Outcome::Failure,
            Some("root"),
            Some("5.36.59.76"),
            Some(42393),
            false,
        ),
        (
            b"Failed password for root from 183.62.140.253 port 38296 ssh2",
            "ssh_login",
            Outcome::Failure,
            Some("root"),
            Some("183.62.140.253"),
            Some(38296),
            false,
        ),
        (
            b"Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
            "ssh_login",
            Outcome::Failure,
            Some("webmaster"),
            Some("173.234.31.186"),
            Some(38926),
            true,
        ),
        (
            b"Failed none for invalid user admin from 10.0.0.5 port 22 ssh2",
            "ssh_login",
            Outcome::Failure,
            Some("admin"),
            Some("10.0.0.5"),
            Some(22),
            true,
        ),
        (
            b"Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
            "ssh_login",
            Outcome::Success,
            Some("fztu"),
            Some("119.137.62.142"),
            Some(49116),
            false,
        ),
        (
            b"Accepted publickey for deploy from 2001:db8::1 port 50000 ssh2: RSA SHA256:abc",
            "ssh_login",
            Outcome::Success,
            Some("deploy"),
            Some("2001:db8::1"),
            Some(50000),
            false,
        ),
        (
            b"Invalid user webmaster from 173.234.31.186",
            "ssh_login",
            Outcome::Failure,
            Some("webmaster"),
            Some("173.234.31.186"),
            None,
            true,
        ),
        (
            b"Invalid user test9 from 52.80.34.196 port 36060",
            "ssh_login",
            Outcome::Failure,
            Some("test9"),
            Some("52.80.34.196"),
            Some(36060),
            true,
        ),
        (
            b"authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=183.62.140.253  user=root",
            "pam_authentication",
            Outcome::Failure,
            Some("root"),
            Some("183.62.140.253"),
            None,
            false,
        ),
        (
            b"authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
            "pam_authentication",
            Outcome::Failure,
            None,
            Some("218.188.2.4"),
            None,
            false,
        ),
        (
            b"Connection closed by authenticating user root 10.1.2.3 port 4242 [preauth]",
            "ssh_preauth_closed",
            Outcome::Failure,
            Some("root"),
            Some("10.1.2.3"),
            Some(4242),
            false,
        ),
        (
            b"Connection closed by 10.1.2.3 port 4242 [preauth]",
            "ssh_preauth_closed",
            Outcome::Failure,
            None,
            Some("10.1.2.3"),
            Some(4242),
            false,
        ),
    ];

    #[test]
    fn each_login_message_yields_who_from_where_and_how_it_went() {
        for (msg, action, outcome, user, ip, port, invalid) in CASES {
            let l = parse(msg).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(msg)));
            assert_eq!(
                (l.action, l.outcome, l.user, l.source_ip, l.source_port, l.invalid_user),
                (*action, *outcome, *user, *ip, *port, *invalid),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn other_messages_are_not_logins() {
        for msg in [
            &b"Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]"[..],
            b"",
            b"Failed",
            b"\xff\xfe",
            b"pam_unix(sshd:session): session opened for user x",
        ] {
            assert_eq!(parse(msg), None, "{:?}", String::from_utf8_lossy(msg));
        }
    }

    /// The loghub OpenSSH sample: every `Failed password` line yields a user
    /// and an address, counted apart with a plain search.
    #[test]
    fn every_failed_password_line_of_the_openssh_sample_yields_user_and_ip() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub/OpenSSH_2k.log");
        let Ok(text) = std::fs::read(&path) else {
            eprintln!("skipped: no {}", path.display());
            return;
        };
        let now = time::macros::datetime!(2026-12-20 00:00 UTC);
        let (mut expected, mut found) = (0, 0);
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // Counted apart: every line that says it, `message repeated N
            // times: [ Failed password ...]` included.
            let says_it = memchr::memmem::find(line, b"Failed password for ").is_some();
            if says_it {
                expected += 1;
            }
            let m = super::super::rfc3164::parse(line, now).unwrap();
            if let Some(l) = parse(m.msg) {
                if l.action == "ssh_login" && l.outcome == Outcome::Failure && says_it {
                    assert!(l.user.is_some() && l.source_ip.is_some());
                    found += 1;
                }
            }
        }
        assert!(expected > 0);
        assert_eq!(found, expected);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_a_login_or_none(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(&msg);
        }
    }
}
