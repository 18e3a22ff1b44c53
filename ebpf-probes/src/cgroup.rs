//! Which cgroup (and container, and Kubernetes pod) a thread belongs to,
//! from `/proc/<pid>/cgroup`, cached per pid.

/// Where a thread runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Placement {
    /// cgroup v2 path (`/system.slice/ssh.service`), or the v1 cpu
    /// controller's; `unknown` once the thread is gone.
    pub cgroup: String,
    /// Container id (64 hex characters) when the path holds one.
    pub container_id: Option<String>,
    /// Kubernetes pod UID when the path holds one.
    pub pod_uid: Option<String>,
}

/// Parses the text of `/proc/<pid>/cgroup`.
pub fn parse(text: &str) -> Placement {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            text.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrl.split(',').any(|c| c == "cpu").then_some(path)
            })
        })
        .unwrap_or("/")
        .to_string();
    Placement {
        container_id: container_id(&path),
        pod_uid: pod_uid(&path),
        cgroup: path,
    }
}

/// The last 64-hex-character run in the path (docker-<id>.scope,
/// cri-containerd-<id>.scope, /docker/<id>, …).
fn container_id(path: &str) -> Option<String> {
    path.split(|c: char| !c.is_ascii_hexdigit())
        .rfind(|s| s.len() == 64)
        .map(str::to_string)
}

/// `pod<uid>` with dashes or underscores (systemd escapes them).
fn pod_uid(path: &str) -> Option<String> {
    path.match_indices("pod").find_map(|(i, _)| {
        let uid: String = path[i + 3..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-' || *c == '_')
            .map(|c| if c == '_' { '-' } else { c })
            .collect();
        (uid.len() == 36).then_some(uid)
    })
}

/// Where `pid` runs, read from `/proc/<pid>/cgroup` (`unknown` once the
/// process is gone). Cached per pid by [`crate::process::PidCache`].
pub fn read_placement(pid: u32) -> Placement {
    match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(t) => parse(&t),
        Err(_) => Placement {
            cgroup: "unknown".into(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_and_docker_paths() {
        let id = "a".repeat(64);
        let k8s = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_1111_2222_333344445555.slice/cri-containerd-{id}.scope\n"
        );
        let p = parse(&k8s);
        assert_eq!(p.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            p.pod_uid.as_deref(),
            Some("1b2c3d4e-0000-1111-2222-333344445555")
        );
        let docker = parse(&format!(
            "12:cpu,cpuacct:/docker/{id}\n1:name=systemd:/init.scope\n"
        ));
        assert_eq!(docker.cgroup, format!("/docker/{id}"));
        assert_eq!(docker.container_id.as_deref(), Some(id.as_str()));
        let plain = parse("0::/system.slice/ssh.service\n");
        assert_eq!((plain.container_id, plain.pod_uid), (None, None));
    }
}
