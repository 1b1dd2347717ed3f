//! A seeded fleet of services calling each other, with diurnal load,
//! noise and injected incidents, for measuring detectors' precision and
//! recall (`tripline-fleet-sim`, `tests/fleet.rs`).
//!
//! Each service exposes routes; each calls a few routes of a few others
//! (fixed pairs). A rate spike is injected on a route with at least 6
//! calls a minute at that hour (5x of it passes the example's
//! `min_count`), an error burst on a service with at least 25 (40% of
//! it passes the error `min_count`); a quieter route's burst is not an
//! incident a count detector can see. Calls per minute follow a day curve with Poisson noise;
//! users log in, and now and then mistype. Incidents are injected at
//! seeded times, each with the detector that should catch it and the
//! group its alert should name.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The shape of a simulation.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub services: usize,
    pub routes: usize,
    pub callees: usize,
    pub days: u32,
    /// Mean calls a minute of the busiest pair at the day's peak.
    pub peak_rate: f64,
    /// Incidents of each kind injected each day after the first.
    pub incidents_per_day: usize,
    pub seed: u64,
}

/// An injected incident: what should fire, on which group, when.
#[derive(Debug, Clone)]
pub struct Incident {
    pub detector: &'static str,
    pub group_key: String,
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    /// A side effect another detector may rightly see (a brute force is
    /// also a burst of failures on the login route): it explains an alert
    /// but does not count against recall.
    pub optional: bool,
}

/// Seconds of the simulation's first minute.
pub const T0: i64 = 1_764_547_200; // 2025-12-01T00:00:00Z

fn service(i: usize) -> String {
    format!("svc-{i:02}")
}

fn poisson(rng: &mut SmallRng, lambda: f64) -> u64 {
    // Knuth for small means, normal approximation above.
    if lambda > 50.0 {
        let z: f64 = {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        return (lambda + z * lambda.sqrt()).round().max(0.0) as u64;
    }
    let l = (-lambda).exp();
    let (mut k, mut p) = (0u64, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

impl Fleet {
    /// Runs the simulation minute by minute, handing each minute's events
    /// (in time order) to `sink`; returns the incidents injected.
    pub fn run(&self, mut sink: impl FnMut(Vec<Value>)) -> Vec<Incident> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        // Pairs: caller, callee, route, method, base rate, caller address.
        let mut pairs = Vec::new();
        for caller in 0..self.services {
            let mut callees = Vec::new();
            while callees.len() < self.callees.min(self.services - 1) {
                let c = rng.random_range(0..self.services);
                if c != caller && !callees.contains(&c) {
                    callees.push(c);
                }
            }
            for callee in callees {
                let route = rng.random_range(0..self.routes);
                let method = if rng.random_bool(0.7) { "GET" } else { "POST" };
                let rate = self.peak_rate * rng.random_range(0.2..1.0);
                pairs.push((caller, callee, route, method, rate));
            }
        }
        let minutes = i64::from(self.days) * 1440;
        // Incidents, spread over the days after the first (learning).
        let mut incidents = Vec::new();
        let mut plan: Vec<(i64, usize)> = Vec::new();
        for kind in 0..6 {
            for n in 0..i64::from(self.days.saturating_sub(1)).max(1) {
                for _ in 0..self.incidents_per_day {
                    let day = 1 + n;
                    let minute = day * 1440 + rng.random_range(60..1380) + kind * 7;
                    if minute < minutes - 30 {
                        plan.push((minute, kind as usize));
                    }
                }
            }
        }
        plan.sort();
        let users: Vec<String> = (0..200).map(|i| format!("user{i:03}")).collect();
        // start, end, kind, target pair, serial (unique names per incident)
        let mut active: Vec<(i64, i64, usize, usize, usize)> = Vec::new();
        for m in 0..minutes {
            let t = T0 + m * 60;
            let hour = (m % 1440) as f64 / 60.0;
            let day_curve = 0.55 + 0.45 * ((hour - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).cos();
            let mut events: Vec<(i64, Value)> = Vec::new();
            for &(start, kind) in plan.iter().filter(|(s, _)| *s == m) {
                // A spike on a route busy enough for a 5x burst to pass
                // min_count (6 calls a minute at that hour, 30 in the burst).
                let busy: Vec<usize> = (0..pairs.len())
                    .filter(|&i| {
                        let (_, callee, route, _, _) = pairs[i];
                        let route_rate: f64 = pairs
                            .iter()
                            .filter(|p| p.1 == callee && p.2 == route)
                            .map(|p| p.4)
                            .sum();
                        let service_rate: f64 = pairs.iter().filter(|p| p.1 == callee).map(|p| p.4).sum();
                        match kind {
                            0 => route_rate * day_curve >= 6.0,
                            // 40% errors pass min_count (10) at 25 calls a minute.
                            1 => service_rate * day_curve >= 25.0,
                            _ => true,
                        }
                    })
                    .collect();
                // None busy enough at this hour: no count detector could
                // see it, so it is not injected.
                if busy.is_empty() {
                    continue;
                }
                let target = busy[rng.random_range(0..busy.len())];
                let serial = incidents.len();
                active.push((start, start + 3, kind, target, serial));
                let ip = |net: &str| format!("{net}.{}.{}", serial / 250, serial % 250 + 1);
                let (caller, callee, route, _, _) = pairs[target];
                let svc = service(callee);
                let (detector, group_key) = match kind {
                    0 => (
                        "route-rate-spike",
                        format!("service.name={svc},url.path=/api/{svc}/r{route}"),
                    ),
                    1 => ("service-error-burst", format!("service.name={svc}")),
                    2 => (
                        "untrusted-source",
                        format!("service.name={svc},source.ip={}", ip("198.51")),
                    ),
                    3 => (
                        "new-caller-route",
                        format!("service.origin.name=svc-new-{serial},service.name={svc},url.path=/api/{svc}/r{route}"),
                    ),
                    4 => ("brute-force", format!("source.ip={}", ip("10.250"))),
                    _ => ("password-spray", format!("source.ip={}", ip("10.251"))),
                };
                let _ = caller;
                incidents.push(Incident {
                    detector,
                    group_key,
                    start: t,
                    end: t + 3 * 60,
                    optional: false,
                });
                if kind == 4 || kind == 5 {
                    for (detector, group_key) in [
                        ("service-error-burst", "service.name=auth".to_string()),
                        ("route-rate-spike", "service.name=auth,url.path=/login".to_string()),
                    ] {
                        incidents.push(Incident {
                            detector,
                            group_key,
                            start: t,
                            end: t + 3 * 60,
                            optional: true,
                        });
                    }
                }
            }
            active.retain(|(_, end, _, _, _)| *end > m);
            for &(caller, callee, route, method, rate) in &pairs {
                let mut lambda = rate * day_curve;
                let mut error_share = 0.005;
                for &(_, _, kind, target, _) in &active {
                    if kind == 0 && pairs[target].1 == callee && pairs[target].2 == route {
                        lambda *= 5.0;
                    }
                    if pairs[target].1 == callee && kind == 1 {
                        error_share = 0.4;
                    }
                }
                let svc = service(callee);
                for _ in 0..poisson(&mut rng, lambda) {
                    let s = rng.random_range(0..60);
                    let status = if rng.random_bool(error_share) { 503 } else { 200 };
                    events.push((
                        t + s,
                        json!({"service": {"name": svc, "origin": {"name": service(caller)}},
                               "url": {"path": format!("/api/{svc}/r{route}")},
                               "http": {"request": {"method": method}, "response": {"status_code": status}},
                               "source": {"ip": format!("10.{}.{}.{}", 1 + caller / 200, caller % 200, 10 + route)},
                               "event": {"category": "web"}}),
                    ));
                }
            }
            // Logins: users, a few mistyping.
            for _ in 0..poisson(&mut rng, 20.0 * day_curve) {
                let u = &users[rng.random_range(0..users.len())];
                let ok = rng.random_bool(0.97);
                events.push((
                    t + rng.random_range(0..60),
                    json!({"service": {"name": "auth"}, "url": {"path": "/login"}, "user": {"name": u},
                           "source": {"ip": format!("10.200.{}.{}", rng.random_range(0..4), rng.random_range(1..250))},
                           "event": {"category": "authentication", "outcome": if ok { "success" } else { "failure" }},
                           "http": {"response": {"status_code": if ok { 200 } else { 401 }}}}),
                ));
            }
            for &(start, _, kind, target, serial) in &active {
                if start != m {
                    continue;
                }
                let ip = |net: &str| format!("{net}.{}.{}", serial / 250, serial % 250 + 1);
                let (_, callee, route, method, _) = pairs[target];
                let svc = service(callee);
                match kind {
                    2 => {
                        for k in 0..5 {
                            events.push((
                                t + k * 10,
                                json!({"service": {"name": svc}, "url": {"path": format!("/api/{svc}/r{route}")},
                                       "http": {"request": {"method": method}, "response": {"status_code": 200}},
                                       "source": {"ip": ip("198.51")}}),
                            ));
                        }
                    }
                    3 => {
                        for k in 0..3 {
                            events.push((
                                t + k * 20,
                                json!({"service": {"name": svc, "origin": {"name": format!("svc-new-{serial}")}},
                                       "url": {"path": format!("/api/{svc}/r{route}")},
                                       "http": {"request": {"method": method}, "response": {"status_code": 200}},
                                       "source": {"ip": "10.9.9.9"}}),
                            ));
                        }
                    }
                    4 => {
                        for k in 0..60 {
                            events.push((
                                t + k,
                                json!({"service": {"name": "auth"}, "url": {"path": "/login"}, "user": {"name": "admin"},
                                       "source": {"ip": ip("10.250")},
                                       "event": {"category": "authentication", "outcome": "failure"},
                                       "http": {"response": {"status_code": 401}}}),
                            ));
                        }
                    }
                    5 => {
                        for (k, u) in users.iter().take(15).enumerate() {
                            events.push((
                                t + k as i64 * 4,
                                json!({"service": {"name": "auth"}, "url": {"path": "/login"}, "user": {"name": u},
                                       "source": {"ip": ip("10.251")},
                                       "event": {"category": "authentication", "outcome": "failure"},
                                       "http": {"response": {"status_code": 401}}}),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            events.sort_by_key(|(ts, _)| *ts);
            sink(
                events
                    .into_iter()
                    .map(|(ts, mut v)| {
                        v["@timestamp"] = json!(ts);
                        v
                    })
                    .collect(),
            );
        }
        incidents
    }
}

/// How one detector did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Score {
    pub detector: String,
    pub incidents: usize,
    pub detected: usize,
    pub alerts: usize,
    pub true_alerts: usize,
    pub recall: f64,
    pub precision: f64,
    /// The first alerts no incident explains: group and minute.
    pub unexplained: Vec<String>,
    /// The incidents no alert found: group and minute.
    pub missed: Vec<String>,
}

/// Runs `fleet` through `detectors` in process, suppresses findings as
/// the stage does (by detector and group, for the detector's suppression
/// or `default_suppression`), and scores the alerts against the injected
/// incidents: an alert is true if an incident of its detector names its
/// group and it starts within a minute before to five minutes after the
/// incident. Returns the scores and the events fed.
pub fn score(
    fleet: &Fleet,
    detectors: &[detect::detectors::Detector],
    default_suppression: std::time::Duration,
) -> (Vec<Score>, u64) {
    use std::collections::HashMap;
    let mut states = detect::detectors::States::default();
    let mut last: HashMap<(usize, String), i64> = HashMap::new();
    let mut alerts: Vec<(usize, String, i64)> = Vec::new();
    let mut fed = 0u64;
    let incidents = fleet.run(|events| {
        for v in events {
            let ts = v["@timestamp"].as_i64().unwrap_or(T0);
            let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let Ok(e) = schemas::Event::from_json(v) else { continue };
            fed += 1;
            for f in states.evaluate(detectors, &e, t).0 {
                let d = &detectors[f.detector];
                let key = detect::correlation::group_key(&f.group_by, &f.group);
                let window = d
                    .suppression
                    .as_ref()
                    .and_then(|s| s.duration)
                    .unwrap_or(default_suppression)
                    .as_secs() as i64;
                let k = (f.detector, key.clone());
                if last.get(&k).is_some_and(|at| ts - at <= window) {
                    continue;
                }
                last.insert(k, ts);
                alerts.push((f.detector, key, ts));
            }
        }
    });
    let scores = detectors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mine: Vec<&Incident> = incidents.iter().filter(|x| x.detector == d.id).collect();
            let required: Vec<&&Incident> = mine.iter().filter(|x| !x.optional).collect();
            let fired: Vec<&(usize, String, i64)> = alerts.iter().filter(|a| a.0 == i).collect();
            let hits = |x: &Incident, a: &(usize, String, i64)| {
                a.1 == x.group_key && a.2 >= x.start - 60 && a.2 <= x.end + 300
            };
            let detected = required.iter().filter(|x| fired.iter().any(|a| hits(x, a))).count();
            let true_alerts = fired.iter().filter(|a| mine.iter().any(|x| hits(x, a))).count();
            let unexplained = fired
                .iter()
                .filter(|a| !mine.iter().any(|x| hits(x, a)))
                .take(10)
                .map(|a| format!("{} at minute {}", a.1, (a.2 - T0) / 60))
                .collect();
            let missed = required
                .iter()
                .filter(|x| !fired.iter().any(|a| hits(x, a)))
                .map(|x| format!("{} at minute {}", x.group_key, (x.start - T0) / 60))
                .collect();
            Score {
                missed,
                unexplained,
                detector: d.id.clone(),
                incidents: required.len(),
                detected,
                alerts: fired.len(),
                true_alerts,
                recall: if required.is_empty() {
                    1.0
                } else {
                    detected as f64 / required.len() as f64
                },
                precision: if fired.is_empty() {
                    1.0
                } else {
                    true_alerts as f64 / fired.len() as f64
                },
            }
        })
        .collect();
    (scores, fed)
}
