//! Detectors on a simulated fleet: `examples/detectors.toml` as shipped,
//! over a seeded fleet (`bench::fleet`) with diurnal load, noise and
//! injected incidents, fed in process by the events' own times. Each
//! detector must find at least 95% of its incidents with at least 90% of
//! its alerts explained by one (the targets; BENCHMARKS.md has
//! the week-long, 50-service run).
#![allow(clippy::unwrap_used)]

#[derive(serde::Deserialize)]
struct File {
    detectors: Vec<detect::detectors::DetectorSpec>,
}

#[test]
fn the_example_detectors_find_injected_incidents_on_a_fleet_they_were_not_tuned_on() {
    let file: File = toml::from_str(include_str!("../examples/detectors.toml")).unwrap();
    let catalog = schemas::Catalog::builtin();
    let detectors: Vec<_> = file.detectors.iter().map(|d| d.compile(&catalog).unwrap()).collect();
    for seed in [11, 12] {
        let fleet = bench::fleet::Fleet {
            services: 12,
            routes: 3,
            callees: 3,
            days: 2,
            peak_rate: 20.0,
            incidents_per_day: 3,
            seed,
        };
        let (scores, fed) = bench::fleet::score(&fleet, &detectors, std::time::Duration::from_secs(300));
        assert!(fed > 100_000, "{fed}");
        for s in &scores {
            assert!(s.recall >= 0.95, "seed {seed}: {s:#?}");
            assert!(s.precision >= 0.9, "seed {seed}: {s:#?}");
        }
        let incidents: usize = scores.iter().map(|s| s.incidents).sum();
        assert!(incidents >= 15, "seed {seed}: only {incidents} incidents: {scores:#?}");
    }
}
