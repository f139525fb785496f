//! The device's tuning ([`DeviceOptions`]) from the config's `[tuning]`
//! table and the environment, which overrides the file as the other
//! `PHANTOMMESH_*` variables do. Every mode (`run`, `run --check`, the
//! wireguard-go form) builds it here, so a bad value is an error that names
//! where it came from instead of a default chosen silently deep inside.
use crate::config::toml_config::{tuning_number, TUNING_RANGES};
use crate::config::TuningConfig;
use crate::device::options::DeviceOptions;
use crate::io::linux_udp::UdpOptions;

/// The variables [`device_options`] reads, with the `[tuning]` key each
/// overrides.
pub const ENV_VARS: [(&str, &str); 6] = [
    (crate::device::pipeline::WORKERS_ENV, "workers"),
    (crate::device::io_loop::IO_THREADS_ENV, "io_threads"),
    ("PHANTOMMESH_PACKET_METRICS", "packet_metrics"),
    (crate::io::OFFLOAD_ENV, "offload"),
    (crate::io::linux_udp::RECV_BUFFER_ENV, "udp_recv_buffer"),
    (crate::device::options::INLINE_BATCH_ENV, "inline_batch"),
];

/// Builds the options: defaults, then `tuning` (already checked when the
/// file was parsed), then the environment through `env` (pass
/// `|k| std::env::var(k).ok()`; an empty value counts as unset). Err names
/// the variable and the value.
pub fn device_options(
    tuning: &TuningConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<DeviceOptions, String> {
    let d = DeviceOptions::default();
    let mut o = DeviceOptions {
        workers: tuning.workers.unwrap_or(d.workers),
        io_threads: tuning.io_threads.unwrap_or(d.io_threads),
        packet_metrics: tuning.packet_metrics.unwrap_or(d.packet_metrics),
        offload: tuning.offload.unwrap_or(d.offload),
        udp_recv_buffer: tuning.udp_recv_buffer.unwrap_or(d.udp_recv_buffer),
        inline_batch: tuning.inline_batch.unwrap_or(d.inline_batch),
    };
    for (var, key) in ENV_VARS {
        let Some(v) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let bad = |want: String| format!("{var}: invalid value {v:?}: expected {want}");
        match key {
            "packet_metrics" => o.packet_metrics = switch(&v).ok_or_else(|| bad(SWITCH.into()))?,
            "offload" => o.offload = switch(&v).ok_or_else(|| bad(SWITCH.into()))?,
            _ => {
                let (_, lo, hi) = TUNING_RANGES
                    .iter()
                    .find(|(k, ..)| *k == key)
                    .copied()
                    .expect("every number key has a range");
                let n = v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| tuning_number(key, n).ok())
                    .ok_or_else(|| bad(format!("a number {lo}..={hi}")))?;
                match key {
                    "workers" => o.workers = n,
                    "io_threads" => o.io_threads = n,
                    "inline_batch" => o.inline_batch = n,
                    _ => o.udp_recv_buffer = n,
                }
            }
        }
    }
    Ok(o)
}

const SWITCH: &str = "on or off (also 1/0, true/false)";

fn switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Some(true),
        "off" | "0" | "false" => Some(false),
        _ => None,
    }
}

/// What the UDP bind needs of the options.
pub fn udp_options(o: &DeviceOptions) -> UdpOptions {
    UdpOptions {
        recv_buffer: o.udp_recv_buffer,
        offload: o.offload,
    }
}

/// One line for `run --check` and the start-up log.
pub fn describe(o: &DeviceOptions) -> String {
    let onoff = |b: bool| if b { "on" } else { "off" };
    let inline = match o.inline_batch {
        0 => "none".to_string(),
        n if n >= crate::device::options::MAX_INLINE_BATCH => "every batch".to_string(),
        n => format!("up to {n} packets"),
    };
    format!(
        "crypto workers {}, inline crypto {inline}, I/O threads {}, packet metrics {}, offloads {}, UDP receive buffer {} bytes",
        o.workers,
        o.io_threads,
        onoff(o.packet_metrics),
        onoff(o.offload),
        o.udp_recv_buffer
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_defaults() {
        let file = TuningConfig {
            workers: Some(3),
            io_threads: Some(2),
            offload: Some(false),
            ..Default::default()
        };
        let o = device_options(&file, env(&[])).unwrap();
        assert_eq!((o.workers, o.io_threads, o.offload), (3, 2, false));
        assert!(o.packet_metrics);
        assert_eq!(o.inline_batch, DeviceOptions::default().inline_batch);
        let o = device_options(
            &file,
            env(&[
                ("PHANTOMMESH_WORKERS", "5"),
                ("PHANTOMMESH_OFFLOAD", "on"),
                ("PHANTOMMESH_PACKET_METRICS", "off"),
                ("PHANTOMMESH_UDP_RCVBUF", "65536"),
                ("PHANTOMMESH_IO_THREADS", ""),
                ("PHANTOMMESH_INLINE_BATCH", "0"),
            ]),
        )
        .unwrap();
        assert_eq!((o.workers, o.io_threads, o.offload), (5, 2, true));
        assert_eq!(o.inline_batch, 0);
        assert_eq!((o.packet_metrics, o.udp_recv_buffer), (false, 65536));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, val) in [
            ("PHANTOMMESH_WORKERS", "many"),
            ("PHANTOMMESH_WORKERS", "0"),
            ("PHANTOMMESH_IO_THREADS", "9"),
            ("PHANTOMMESH_PACKET_METRICS", "maybe"),
            ("PHANTOMMESH_OFFLOAD", "no thanks"),
            ("PHANTOMMESH_UDP_RCVBUF", "12"),
            ("PHANTOMMESH_INLINE_BATCH", "-1"),
            ("PHANTOMMESH_INLINE_BATCH", "4097"),
        ] {
            let e = device_options(&TuningConfig::default(), env(&[(var, val)])).unwrap_err();
            assert!(
                e.starts_with(&format!("{var}: invalid value {val:?}")),
                "{e}"
            );
        }
    }
}
