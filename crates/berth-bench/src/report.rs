//! Samples per metric and registry, medians, B/A ratios, the table and the JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::ceilings::Ceilings;

/// What was measured; declaration order is table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    LargePush,
    LargePull,
    SkopeoPush,
    SkopeoPull,
    SmallPush,
    ManifestGet,
    ManifestHead,
    TagsList,
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    Rate,
    P50,
    P99,
    Cpu,
    /// The benchmark's own CPU (including skopeo), to see when the client is the limit.
    ClientCpu,
    IdleRss,
    PeakRss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Metric(pub Phase, pub Measure);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transfer,
    Images,
    Requests,
    Memory,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::LargePush => "large_push",
            Phase::LargePull => "large_pull",
            Phase::SkopeoPush => "skopeo_push",
            Phase::SkopeoPull => "skopeo_pull",
            Phase::SmallPush => "small_push",
            Phase::ManifestGet => "manifest_get",
            Phase::ManifestHead => "manifest_head",
            Phase::TagsList => "tags_list",
            Phase::Memory => "memory",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Phase::LargePush => "large push, lean client",
            Phase::LargePull => "large pull, lean client",
            Phase::SkopeoPush => "large push, skopeo",
            Phase::SkopeoPull => "large pull, skopeo",
            Phase::SmallPush => "small-image push",
            Phase::ManifestGet => "manifest GET by tag",
            Phase::ManifestHead => "manifest HEAD by digest",
            Phase::TagsList => "tags/list",
            Phase::Memory => "memory",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Phase::LargePush | Phase::LargePull | Phase::SkopeoPush | Phase::SkopeoPull => Kind::Transfer,
            Phase::SmallPush => Kind::Images,
            Phase::ManifestGet | Phase::ManifestHead | Phase::TagsList => Kind::Requests,
            Phase::Memory => Kind::Memory,
        }
    }
}

impl Metric {
    /// Flat JSON key, e.g. `large_push_mb_s`.
    pub fn key(self) -> String {
        let Metric(phase, measure) = self;
        let suffix = match (measure, phase.kind()) {
            (Measure::Rate, Kind::Transfer) => "mb_s",
            (Measure::Rate, Kind::Images) => "images_s",
            (Measure::Rate, _) => "req_s",
            (Measure::Cpu, Kind::Transfer) => "cpu_s_per_gb",
            (Measure::Cpu, Kind::Images) => "cpu_ms_per_image",
            (Measure::Cpu, _) => "cpu_s_per_1k_req",
            (Measure::ClientCpu, Kind::Transfer) => "client_cpu_s_per_gb",
            (Measure::ClientCpu, Kind::Images) => "client_cpu_ms_per_image",
            (Measure::ClientCpu, _) => "client_cpu_s_per_1k_req",
            (Measure::P50, _) => "p50_ms",
            (Measure::P99, _) => "p99_ms",
            (Measure::IdleRss, _) => return "idle_rss_mib".into(),
            (Measure::PeakRss, _) => return "peak_rss_mib".into(),
        };
        format!("{}_{suffix}", phase.key())
    }

    fn label(self) -> String {
        let Metric(phase, measure) = self;
        match measure {
            Measure::Rate => phase.label().to_owned(),
            Measure::P50 => "  latency p50".into(),
            Measure::P99 => "  latency p99".into(),
            Measure::Cpu => "  server CPU".into(),
            Measure::ClientCpu => "  client CPU".into(),
            Measure::IdleRss => "idle RSS".into(),
            Measure::PeakRss => "peak RSS".into(),
        }
    }

    fn unit(self) -> &'static str {
        let Metric(phase, measure) = self;
        match (measure, phase.kind()) {
            (Measure::Rate, Kind::Transfer) => "MB/s",
            (Measure::Rate, Kind::Images) => "images/s",
            (Measure::Rate, _) => "req/s",
            (Measure::Cpu | Measure::ClientCpu, Kind::Transfer) => "s/GB",
            (Measure::Cpu | Measure::ClientCpu, Kind::Images) => "ms/image",
            (Measure::Cpu | Measure::ClientCpu, _) => "s/1k req",
            (Measure::P50 | Measure::P99, _) => "ms",
            (Measure::IdleRss | Measure::PeakRss, _) => "MiB",
        }
    }

    /// Which direction favours a registry; the client's own CPU is context, not a score.
    fn better(self) -> Option<&'static str> {
        match self.1 {
            Measure::Rate => Some("higher"),
            Measure::ClientCpu => None,
            _ => Some("lower"),
        }
    }

    /// The machine limit a throughput is read against.
    fn ceiling(self, ceilings: &Ceilings) -> Option<(f64, &'static str)> {
        match self {
            Metric(Phase::LargePush | Phase::SkopeoPush, Measure::Rate) => {
                Some((ceilings.push(), "min(SHA-256 1 core, durable disk write)"))
            }
            Metric(Phase::LargePull | Phase::SkopeoPull, Measure::Rate) => {
                Some((ceilings.pull(), "loopback, 1 stream"))
            }
            _ => None,
        }
    }
}

pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// One failed phase; the run goes on and exits non-zero at the end.
pub struct Failure {
    pub registry: &'static str,
    pub phase: String,
    pub round: Option<u32>,
    pub message: String,
}

#[derive(Default)]
pub struct Results {
    samples: BTreeMap<Metric, [Vec<f64>; 2]>,
    pub failures: Vec<Failure>,
    pub notes: Vec<String>,
}

impl Results {
    /// `side` 0 is A, 1 is B.
    pub fn add(&mut self, metric: Metric, side: usize, value: f64) {
        self.samples.entry(metric).or_default()[side].push(value);
    }

    /// What a run produced, laid out for people; `names` describe A and B.
    pub fn table(&self, names: [&str; 2], ceilings: &Ceilings) -> String {
        let mut out = String::new();
        let header = ["metric", "unit", "A", "B", "B/A", "A of max", "B of max", "better"];
        let widths = [26, 10, 10, 10, 6, 9, 9, 7];
        let line = |cells: [&str; 8]| {
            let mut row = format!("{:<w0$} {:<w1$}", cells[0], cells[1], w0 = widths[0], w1 = widths[1]);
            for (cell, width) in cells[2..].iter().zip(&widths[2..]) {
                write!(row, " {cell:>width$}").unwrap();
            }
            row.trim_end().to_owned() + "\n"
        };
        writeln!(out, "{}\n{}", names[0], names[1]).unwrap();
        writeln!(
            out,
            "machine ceilings: SHA-256 one core {:.0} MB/s, durable disk write {:.0} MB/s, loopback one stream {:.0} MB/s",
            ceilings.sha256, ceilings.disk_durable_write, ceilings.loopback
        )
        .unwrap();
        out += "medians over rounds; MB = 10^6 bytes; \"of max\": push against min(SHA-256, disk), pull against loopback\n\n";
        out += &line(header);
        for (&metric, sides) in &self.samples {
            let [a, b] = [median(&sides[0]), median(&sides[1])];
            let ratio = a.zip(b).filter(|&(a, _)| a != 0.0).map(|(a, b)| b / a);
            let of_max = |value: Option<f64>| match (value, metric.ceiling(ceilings)) {
                (Some(value), Some((max, _))) => format!("{:.0}%", 100.0 * value / max),
                _ => String::new(),
            };
            out += &line([
                &metric.label(),
                metric.unit(),
                &a.map_or("-".into(), format_value),
                &b.map_or("-".into(), format_value),
                &ratio.map_or("-".into(), |r| format!("{r:.2}")),
                &of_max(a),
                &of_max(b),
                metric.better().unwrap_or(""),
            ]);
        }
        for note in &self.notes {
            writeln!(out, "note: {note}").unwrap();
        }
        for failure in &self.failures {
            let round = failure.round.map(|r| format!(" round {r}")).unwrap_or_default();
            writeln!(out, "FAILED {} {}{round}: {}", failure.registry, failure.phase, failure.message).unwrap();
        }
        out
    }

    pub fn metrics_json(&self, ceilings: &Ceilings) -> Value {
        let mut metrics = serde_json::Map::new();
        for (&metric, sides) in &self.samples {
            let side = |samples: &Vec<f64>| json!({ "median": median(samples), "samples": samples });
            let (a, b) = (median(&sides[0]), median(&sides[1]));
            let mut entry = json!({
                "label": metric.label().trim(),
                "phase": metric.0.label(),
                "unit": metric.unit(),
                "better": metric.better(),
                "a": side(&sides[0]),
                "b": side(&sides[1]),
                "ratio_b_over_a": a.zip(b).filter(|&(a, _)| a != 0.0).map(|(a, b)| b / a),
            });
            if let Some((max, what)) = metric.ceiling(ceilings) {
                entry["ceiling"] = json!({
                    "mb_s": max,
                    "what": what,
                    "a_fraction": a.map(|a| a / max),
                    "b_fraction": b.map(|b| b / max),
                });
            }
            metrics.insert(metric.key(), entry);
        }
        Value::Object(metrics)
    }

    pub fn failures_json(&self) -> Value {
        self.failures
            .iter()
            .map(|f| json!({ "registry": f.registry, "phase": f.phase, "round": f.round, "message": f.message }))
            .collect()
    }
}

/// Three significant digits or so, never scientific notation.
fn format_value(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn table_and_json_carry_medians_ratios_and_ceilings() {
        let ceilings = Ceilings { sha256: 1000.0, disk_durable_write: 200.0, loopback: 2000.0 };
        let mut results = Results::default();
        for (a, b) in [(100.0, 150.0), (120.0, 170.0), (110.0, 160.0)] {
            results.add(Metric(Phase::LargePush, Measure::Rate), 0, a);
            results.add(Metric(Phase::LargePush, Measure::Rate), 1, b);
        }
        results.add(Metric(Phase::Memory, Measure::IdleRss), 0, 20.0);
        results.add(Metric(Phase::Memory, Measure::IdleRss), 1, 5.0);

        let json = results.metrics_json(&ceilings);
        let push = &json["large_push_mb_s"];
        assert_eq!(push["a"]["median"], 110.0);
        assert_eq!(push["b"]["median"], 160.0);
        assert_eq!(push["ratio_b_over_a"], 160.0 / 110.0);
        assert_eq!(push["ceiling"]["mb_s"], 200.0);
        assert_eq!(push["better"], "higher");
        assert_eq!(json["idle_rss_mib"]["ratio_b_over_a"], 0.25);
        assert_eq!(json["idle_rss_mib"]["better"], "lower");

        let table = results.table(["ref", "new"], &ceilings);
        let push_row = table.lines().find(|l| l.starts_with("large push, lean client")).unwrap();
        assert!(push_row.contains(" 110 ") && push_row.contains(" 160 "), "{push_row}");
        assert!(push_row.contains("1.45") && push_row.contains("55%") && push_row.contains("80%"), "{push_row}");
    }
}
