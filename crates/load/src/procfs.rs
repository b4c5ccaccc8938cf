//! What the socket scenarios read from the operating system: a process's
//! memory (`/proc/<pid>/status`), open descriptors and open-file limit, the
//! ephemeral port range, and the load tool's own `RLIMIT_NOFILE`, which it
//! raises to the hard limit at start (every socket is a descriptor).
//! Linux only; elsewhere the readings are simply absent.

use std::fs;
use std::io;

use serde::Serialize;

/// Memory of one process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Resident set size now.
    pub vm_rss_kib: u64,
    /// Peak resident set size ("high water mark").
    pub vm_hwm_kib: u64,
    /// Threads of the process.
    pub threads: u64,
}

/// `/proc/<pid>` or `/proc/self`.
fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    }
}

/// Reads the memory of `pid` (`None`: this process).
pub fn memory(pid: Option<u32>) -> io::Result<Memory> {
    let text = fs::read_to_string(format!("{}/status", proc_dir(pid)))?;
    parse_status(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no VmRSS/VmHWM in /proc/<pid>/status",
        )
    })
}

/// `VmRSS:  123456 kB` and `VmHWM:` out of a status file.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        vm_rss_kib: field("VmRSS:")?,
        vm_hwm_kib: field("VmHWM:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// CPU time (user + system) the process has used so far, in seconds.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let text = fs::read_to_string(format!("{}/stat", proc_dir(pid))).ok()?;
    // SAFETY: `sysconf` only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_cpu_ticks(&text).map(|t| t as f64 / ticks.max(1) as f64)
}

/// CPU seconds between two [`cpu_seconds`] readings, to 10 ms.
pub fn cpu_spent(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    before
        .zip(after)
        .map(|(b, a)| ((a - b) * 100.0).round() / 100.0)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command
/// name in parentheses may contain spaces, so fields are counted after it.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process's name (`/proc/<pid>/comm`), to show which process was measured.
pub fn command_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Open descriptors of `pid` (`None`: this process); needs the right to read
/// its `fd` directory (same user or root).
pub fn open_fds(pid: Option<u32>) -> Option<usize> {
    fs::read_dir(format!("{}/fd", proc_dir(pid)))
        .ok()
        .map(|dir| dir.count())
}

/// `(soft, hard)` open-file limit of `pid` from `/proc/<pid>/limits`
/// (`None` for "unlimited" is reported as `u64::MAX`).
pub fn nofile_limit_of(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_nofile_limit(&text)
}

/// The `Max open files  1024  4096  files` line of a limits file.
pub fn parse_nofile_limit(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace().map(|v| {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    });
    Some((values.next()??, values.next()??))
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// `TcpExt: ListenOverflows` from `/proc/net/netstat`: connections the
/// kernel dropped because a listening socket's accept queue was full (for the
/// whole network namespace, so other programs count too).
pub fn listen_overflows() -> Option<u64> {
    parse_listen_overflows(&fs::read_to_string("/proc/net/netstat").ok()?)
}

pub fn parse_listen_overflows(text: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// This process's `RLIMIT_NOFILE` after raising the soft limit to the hard
/// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the resulting limits. Failure to raise leaves the limit as it was.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes a `struct rlimit` through a valid pointer to
    // one we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the `struct rlimit` we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // `rlim_t` is `u64` on Linux, and RLIM_INFINITY is `u64::MAX`.
    Ok(NofileLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tchatterly\nVmPeak:\t  999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                vm_rss_kib: 102_400,
                vm_hwm_kib: 204_800,
                threads: 3,
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn parses_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95000                95000                processes \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_nofile_limit(text), Some((20_000, 20_000)));
        let unlimited =
            "Max open files            1024                 unlimited            files\n";
        assert_eq!(parse_nofile_limit(unlimited), Some((1024, u64::MAX)));
        assert_eq!(parse_nofile_limit("nothing"), None);
    }

    #[test]
    fn parses_cpu_ticks() {
        let stat =
            "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert!(cpu_seconds(None).is_some());
    }

    #[test]
    fn parses_listen_overflows() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 109 110\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_overflows(text), Some(109));
        assert_eq!(parse_listen_overflows("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = memory(None).expect("own status");
        assert!(me.vm_rss_kib > 0 && me.vm_hwm_kib >= me.vm_rss_kib);
        assert!(open_fds(None).is_some_and(|n| n >= 3));
        let limit = raise_nofile_limit().expect("rlimit");
        assert_eq!(limit.soft, limit.hard);
        let own = nofile_limit_of(std::process::id()).expect("own limits");
        assert_eq!(own.0, limit.soft);
    }
}
