//! The memory cgroup this function runs in, as far as the kernel tells: how
//! many times its OOM killer has fired there. Inside a container with a
//! memory limit, a tool the function starts (ffmpeg, PocketSphinx) is often
//! what the kernel kills; a SIGKILL it did not send plus a higher count
//! means the function ran out of its memory, not that the tool crashed.
//!
//! cgroup v2: `oom_kill` in `memory.events`; v1: in `memory.oom_control`.
//! Each is looked up in the process's own cgroup (from `/proc/self/cgroup`),
//! then at the root of the mount, which is the container's own cgroup when
//! the container does not see the host's hierarchy.

use std::path::PathBuf;

/// The count of OOM kills in this process's memory cgroup; `None` when the
/// kernel does not tell (no memory controller, or nothing mounted).
pub fn oom_kills() -> Option<u64> {
    candidates().into_iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
    })
}

/// Whether the OOM killer fired in this cgroup since it counted `before`.
pub fn oom_killed_since(before: Option<u64>) -> bool {
    matches!((before, oom_kills()), (Some(before), Some(now)) if now > before)
}

fn candidates() -> Vec<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut paths = Vec::new();
    for line in cgroups.lines() {
        // `hierarchy-id:controllers:path`
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            paths.push(PathBuf::from("/sys/fs/cgroup").join(path).join("memory.events"));
        } else if controllers.split(',').any(|c| c == "memory") {
            paths.push(PathBuf::from("/sys/fs/cgroup/memory").join(path).join("memory.oom_control"));
        }
    }
    paths.push(PathBuf::from("/sys/fs/cgroup/memory.events"));
    paths.push(PathBuf::from("/sys/fs/cgroup/memory/memory.oom_control"));
    paths
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_tells_the_count() {
        // Every Linux with a memory controller (the CI machine has one) tells it.
        assert!(super::oom_kills().is_some(), "no oom_kill count in {:?}", super::candidates());
    }
}
