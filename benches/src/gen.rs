//! A deterministic generator of fleet events.
//!
//! The mix: 55% HTTP access logs between services, 20% authentication
//! events, 15% CloudTrail-style records, 10% host syslog lines (as JSON with
//! the line in `message`, or raw in [`Generator::next_raw`]). Cardinalities
//! as in a mid-size fleet: 300 services, 200 endpoints, 5,000 users, 12,000
//! IP addresses, 400 hosts. JSON events average about 400 bytes.
//!
//! The needle, `198.51.100.77`, appears as `source.ip` once every
//! [`Generator::needle_every`] events and nowhere else.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The rare IP the needle query looks for.
pub const NEEDLE_IP: &str = "198.51.100.77";

const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "PUT"];
const STATUSES: [u16; 10] = [200, 200, 200, 200, 201, 204, 302, 404, 500, 503];
const RESOURCES: [&str; 20] = [
    "orders",
    "users",
    "carts",
    "payments",
    "invoices",
    "products",
    "search",
    "sessions",
    "tokens",
    "reports",
    "shipments",
    "refunds",
    "accounts",
    "catalog",
    "prices",
    "reviews",
    "stock",
    "coupons",
    "webhooks",
    "exports",
];
const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "python-requests/2.32.3",
];
const CT_CALLS: [(&str, &str); 10] = [
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "PutObject"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("iam.amazonaws.com", "CreateAccessKey"),
    ("iam.amazonaws.com", "ListRoles"),
    ("sts.amazonaws.com", "AssumeRole"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("ec2.amazonaws.com", "RunInstances"),
    ("kms.amazonaws.com", "Decrypt"),
    ("lambda.amazonaws.com", "Invoke20150331"),
];
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"];
const SYSLOG: [&str; 6] = [
    "Failed password for invalid user {user} from {ip} port {port} ssh2",
    "Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:Zk3x",
    "pam_unix(sshd:session): session opened for user {user} by (uid=0)",
    "Connection closed by authenticating user {user} {ip} port {port} [preauth]",
    "error: maximum authentication attempts exceeded for {user} from {ip} port {port} ssh2 [preauth]",
    "Received disconnect from {ip} port {port}:11: disconnected by user",
];

/// Seeded event source; the same seed and start give the same events.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    ts: i128,
    step: i128,
    count: u64,
    /// One event in this many carries the needle IP.
    pub needle_every: u64,
}

impl Generator {
    /// Events starting at `start_nanos` (Unix), 1 ms apart by default.
    pub fn new(seed: u64, start_nanos: i128) -> Generator {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            ts: start_nanos,
            step: 1_000_000,
            count: 0,
            needle_every: 1_000_000,
        }
    }

    /// Sets the time between events.
    pub fn with_step_nanos(mut self, step: i128) -> Generator {
        self.step = step.max(1);
        self
    }

    fn now(&mut self) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(self.ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.ts += self.step;
        schemas::time::format(t)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn internal_ip(&mut self) -> String {
        let n = self.rng.random_range(0..10_000u32);
        format!("10.{}.{}.{}", 20 + n / 2500, (n / 50) % 50, 10 + n % 50)
    }

    fn external_ip(&mut self) -> String {
        let n = self.rng.random_range(0..2_000u32);
        format!("203.0.{}.{}", 113 + n / 250 % 4, n % 250 + 1)
    }

    fn user(&mut self) -> String {
        format!("user{:04}", self.rng.random_range(0..5_000u32))
    }

    fn service(&mut self) -> String {
        format!("svc-{}-{:03}", self.pick(&RESOURCES), self.rng.random_range(0..15u32))
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)]))
            .collect()
    }

    /// The next event as JSON.
    pub fn next_json(&mut self) -> Value {
        self.count += 1;
        let needle = self.count.is_multiple_of(self.needle_every);
        let roll = self.rng.random_range(0..100u32);
        let mut v = if roll < 55 {
            self.http()
        } else if roll < 75 {
            self.auth()
        } else if roll < 90 {
            self.cloudtrail()
        } else {
            self.syslog_json()
        };
        if needle {
            v["source"] = json!({"ip": NEEDLE_IP});
            v["tags"] = json!(["needle"]);
        }
        v
    }

    /// The next event as one NDJSON line (without the newline).
    pub fn next_line(&mut self) -> String {
        self.next_json().to_string()
    }

    /// The next host log line as raw RFC 3164 syslog.
    pub fn next_raw(&mut self) -> String {
        self.count += 1;
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(self.ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.ts += self.step;
        let stamp = format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            &format!("{:?}", t.month())[..3],
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let host = format!("host-{:03}", self.rng.random_range(0..400u32));
        let pid = self.rng.random_range(1000..65000u32);
        format!("<38>{stamp} {host} sshd[{pid}]: {}", self.syslog_message())
    }

    fn syslog_message(&mut self) -> String {
        let user = self.user();
        let ip = self.external_ip();
        let port = self.rng.random_range(1024..65535u32).to_string();
        self.pick(&SYSLOG)
            .replace("{user}", &user)
            .replace("{ip}", &ip)
            .replace("{port}", &port)
    }

    fn http(&mut self) -> Value {
        let ts = self.now();
        let (src, dst) = (self.service(), self.service());
        let method = self.pick(&METHODS);
        let resource = self.pick(&RESOURCES);
        let path = format!(
            "/api/v{}/{resource}/{}",
            self.rng.random_range(1..3u32),
            self.rng.random_range(0..10u32)
        );
        let status = STATUSES[self.rng.random_range(0..STATUSES.len())];
        let latency_ms = self.rng.random_range(1..400u32);
        json!({
            "@timestamp": ts,
            "message": format!("{method} {path} {status} {latency_ms}ms"),
            "service": {"name": dst},
            "source": {"ip": self.internal_ip(), "port": self.rng.random_range(30000..61000u32)},
            "destination": {"ip": self.internal_ip(), "port": 8080},
            "http": {"request": {"method": method}, "response": {"status_code": status}},
            "url": {"path": path, "domain": format!("{src}.internal")},
            "event": {"category": "web", "duration": u64::from(latency_ms) * 1_000_000},
            "user_agent": {"original": self.pick(&AGENTS)},
            "trace": {"id": self.hex(16)},
        })
    }

    fn auth(&mut self) -> Value {
        let ts = self.now();
        let user = self.user();
        let ok = self.rng.random_range(0..10u32) < 8;
        let ip = if self.rng.random_range(0..4u32) == 0 {
            self.external_ip()
        } else {
            self.internal_ip()
        };
        json!({
            "@timestamp": ts,
            "message": format!("login {} for {user} from {ip}", if ok { "succeeded" } else { "failed" }),
            "event": {"category": "authentication", "action": "user_login", "outcome": if ok { "success" } else { "failure" }},
            "user": {"name": user, "id": format!("u-{}", self.hex(12))},
            "source": {"ip": ip},
            "service": {"name": "svc-auth-000"},
            "host": {"name": format!("host-{:03}", self.rng.random_range(0..400u32))},
            "labels": {"env": "prod", "region": self.pick(&REGIONS)},
            "log": {"level": if ok { "info" } else { "warn" }},
        })
    }

    fn cloudtrail(&mut self) -> Value {
        let ts = self.now();
        let (source, name) = CT_CALLS[self.rng.random_range(0..CT_CALLS.len())];
        let user = self.user();
        json!({
            "eventVersion": "1.08",
            "eventTime": ts,
            "eventSource": source,
            "eventName": name,
            "awsRegion": self.pick(&REGIONS),
            "sourceIPAddress": self.external_ip(),
            "userAgent": "aws-cli/2.15.30 Python/3.11.8",
            "userIdentity": {"type": "IAMUser", "accountId": "123456789012", "userName": user,
                             "arn": format!("arn:aws:iam::123456789012:user/{user}")},
            "requestParameters": {"bucketName": format!("bucket-{}", self.rng.random_range(0..40u32))},
            "requestID": self.hex(16),
            "eventID": self.hex(16),
            "readOnly": name.starts_with("Get") || name.starts_with("List") || name.starts_with("Describe"),
            "cloud": {"provider": "aws", "account": {"id": "123456789012"}},
        })
    }

    fn syslog_json(&mut self) -> Value {
        let ts = self.now();
        let message = self.syslog_message();
        json!({
            "@timestamp": ts,
            "message": message,
            "host": {"name": format!("host-{:03}", self.rng.random_range(0..400u32))},
            "process": {"name": "sshd", "pid": self.rng.random_range(1000..65000u32)},
            "log": {"level": "info"},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_average_about_four_hundred_bytes_and_the_needle_is_rare() {
        let mut g = Generator::new(1, 1_700_000_000_000_000_000);
        g.needle_every = 1000;
        let lines: Vec<String> = (0..10_000).map(|_| g.next_line()).collect();
        let avg = lines.iter().map(String::len).sum::<usize>() / lines.len();
        assert!((330..=470).contains(&avg), "average {avg} bytes");
        assert_eq!(lines.iter().filter(|l| l.contains(NEEDLE_IP)).count(), 10);
        assert!(g.next_raw().starts_with("<38>Nov 14 "));
    }
}
