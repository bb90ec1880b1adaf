//! CPU time of a process tree, from `/proc`: what a run cost the machine.
//! Other work on the machine changes it less than wall time.

use std::collections::HashMap;

/// User + system seconds of `root` and its live descendants, including the
/// children each has already waited for.
pub fn tree_seconds(root: u32) -> f64 {
    let mut parent_of = HashMap::new();
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the command name, which is in parentheses and may hold anything.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // stat(5): state ppid ... utime(14) stime cutime cstime, counted from `state` as 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        parent_of.insert(pid, field(4) as u32);
        ticks.insert(pid, field(14) + field(15) + field(16) + field(17));
    }
    let in_tree = |mut pid: u32| loop {
        if pid == root {
            return true;
        }
        match parent_of.get(&pid) {
            Some(&parent) if parent != 0 && parent != pid => pid = parent,
            _ => return false,
        }
    };
    let total: u64 = ticks.iter().filter(|(&pid, _)| in_tree(pid)).map(|(_, t)| t).sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / per_second as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_waited_for_counts() {
        let me = std::process::id();
        let before = super::tree_seconds(me);
        // The child spins until its own user time reaches 20 ticks.
        let spin = r#"while :; do read -r s < /proc/$$/stat; set -- $s; [ "${14}" -ge 20 ] && exit 0; done"#;
        let status = std::process::Command::new("sh").args(["-c", spin]).status().unwrap();
        assert!(status.success());
        // SAFETY: sysconf has no preconditions.
        let tick = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let spent = super::tree_seconds(me) - before;
        assert!(spent >= 20.0 * tick, "the child's 20 ticks are counted, got {spent} s");
    }
}
