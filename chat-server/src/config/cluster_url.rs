//! `REDIS_URL` naming a Redis Cluster, as configuration:
//! `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]` (`rediss+cluster://`
//! for TLS to every node, with `REDIS_CA_FILE` and the client certificate as for
//! `rediss://`; `#insecure` as there). The nodes listed are where a worker starts: it
//! asks them for the slot map and then follows it, through failovers and resharding
//! (the redis crate's cluster client, `hub/link.rs`); one node is enough, more let a
//! worker start while one is down. Every node gets the same credentials. A cluster has
//! only database 0, so the URL names none.

use super::sentinel_url::{host_list, in_url, redacted_userinfo, split_credentials};

/// Most nodes one URL may list.
pub const MAX_NODES: usize = 16;

/// A parsed `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    pub nodes: Vec<(String, u16)>,
    /// `USER:PASSWORD` as written (percent-encoded).
    userinfo: Option<String>,
    pub tls: bool,
    fragment: Option<String>,
}

/// Whether `url` names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`).
pub fn is_cluster(url: &str) -> bool {
    url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://")
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl ClusterUrl {
    /// Parse `url`; an error never quotes the credentials.
    pub fn parse(url: &str) -> Result<ClusterUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            (true, rest)
        } else {
            return Err("must start with redis+cluster:// or rediss+cluster://".into());
        };
        let (userinfo, hosts, fragment) = split_credentials(rest);
        if hosts.contains(['/', '?']) {
            return Err("takes no database or query: redis+cluster://HOST:PORT[,HOST:PORT...]".into());
        }
        let nodes = host_list(hosts, "node")?;
        if nodes.len() > MAX_NODES {
            return Err(format!("lists {} nodes; at most {MAX_NODES}", nodes.len()));
        }
        let parsed = ClusterUrl { nodes, userinfo, tls, fragment };
        if parsed.node_urls().iter().any(|u| url::Url::parse(u).is_err()) {
            return Err("its credentials do not make a URL: percent-encode the user name and password".into());
        }
        Ok(parsed)
    }

    /// The `redis://` (or `rediss://`) URL of each node listed, with the credentials and fragment.
    pub fn node_urls(&self) -> Vec<String> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self.userinfo.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let fragment = self.fragment.as_ref().map(|f| format!("#{f}")).unwrap_or_default();
        self.nodes.iter().map(|(h, p)| format!("{scheme}://{auth}{}:{p}{fragment}", in_url(h))).collect()
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss+cluster" } else { "redis+cluster" };
        let auth = redacted_userinfo(self.userinfo.as_deref());
        let hosts: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{}:{p}", in_url(h))).collect();
        format!("{scheme}://{auth}{}", hosts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterUrl;

    #[test]
    fn urls_parse_into_node_urls_with_the_credentials() {
        let u = ClusterUrl::parse("redis+cluster://:s3cret@10.0.0.5:7000,r2.internal:7001,[fd00::7]:7002").unwrap();
        assert_eq!(
            u.node_urls(),
            ["redis://:s3cret@10.0.0.5:7000", "redis://:s3cret@r2.internal:7001", "redis://:s3cret@[fd00::7]:7002"]
        );
        assert_eq!(u.redacted(), "redis+cluster://:***@10.0.0.5:7000,r2.internal:7001,[fd00::7]:7002");
        assert!(!format!("{u:?}").contains("s3cret"));
        let t = ClusterUrl::parse("rediss+cluster://app:pw@h:7000#insecure").unwrap();
        assert_eq!(t.node_urls(), ["rediss://app:pw@h:7000#insecure"]);
        assert_eq!(t.redacted(), "rediss+cluster://app:***@h:7000");
        for bad_password in
            ["redis+cluster://:pZq/9x@h:1", "redis+cluster://:pZq#9x@h:1", "redis+cluster://:pZq?9x@h:1"]
        {
            let e = ClusterUrl::parse(bad_password).unwrap_err();
            assert!(!e.contains("pZq") && !e.contains("9x"), "{e}");
        }
        for bad in [
            "redis://h:1",
            "redis+cluster://",
            "redis+cluster://h",
            "redis+cluster://h:0",
            "redis+cluster://h:1/0",
            "redis+cluster://h:1?x=1",
            "redis+cluster://h;x:1",
            "redis+cluster://::1:7000",
        ] {
            assert!(ClusterUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn at_most_max_nodes() {
        let url = |n: usize| {
            let hosts: Vec<String> = (0..n).map(|i| format!("n{i}:7000")).collect();
            format!("redis+cluster://{}", hosts.join(","))
        };
        assert_eq!(ClusterUrl::parse(&url(super::MAX_NODES)).unwrap().nodes.len(), super::MAX_NODES);
        assert_eq!(ClusterUrl::parse(&url(super::MAX_NODES + 1)).unwrap_err(), "lists 17 nodes; at most 16");
    }
}
