//! The Nginx config of an app, from the live worker tables: this host's, and
//! those of `[nginx] hosts` ([`hosts`]). Render it with the `[nginx]` template
//! (MiniJinja, strict), check it with `nginx -t` under a temporary prefix,
//! install it atomically, and reload nginx. A render that fails the check is
//! never installed, so the live config stays.

pub mod hosts;
pub mod state;

use std::path::Path;
use std::process::Command;

use minijinja::{Environment, UndefinedBehavior, context, syntax::SyntaxConfig};
use serde::Serialize;

use crate::config::NginxSpec;
use crate::lifecycle::State;
use crate::wire::types::InstanceStatus;

/// The built-in template (`templates/nginx/layer4.conf.j2`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../templates/nginx/layer4.conf.j2");

#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    #[error("cannot read the template {path}: {source}")]
    Template { path: std::path::PathBuf, source: std::io::Error },
    #[error("template {name}: {detail}")]
    Render { name: String, detail: String },
    #[error("nginx -t rejected the rendered config (nothing was installed):\n{0}")]
    Check(String),
    #[error("cannot run `{command}`: {source}")]
    Run { command: String, source: std::io::Error },
    #[error("`{command}` failed: {output}")]
    Failed { command: String, output: String },
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("the folder of [nginx] access_log, {0}, does not exist (nginx would refuse the config when it loads it)")]
    AccessLog(std::path::PathBuf),
}

/// One `server` line of the upstream: an instance on this host or another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// What nginx dials: an IP address or name (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    pub instance: u32,
    /// The API URL of the host it runs on; empty for this host.
    pub origin: String,
    /// Its host did not answer: the last known server, used when no other is up.
    pub backup: bool,
}

/// The instances of `[nginx] app` that get traffic: online ones with a port.
pub fn ready_servers(spec: &NginxSpec, instances: &[InstanceStatus], host: &str, origin: &str) -> Vec<Server> {
    instances
        .iter()
        .filter(|i| i.app == spec.app && i.state == State::Online)
        .filter_map(|i| {
            let port = i.port?;
            Some(Server { host: host.to_owned(), port, instance: i.instance, origin: origin.to_owned(), backup: false })
        })
        .collect()
}

/// Render the config for `spec.app` with one `server` per entry of `servers`.
pub fn render(spec: &NginxSpec, servers: &[Server]) -> Result<String, NginxError> {
    let (name, source) = match &spec.template {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| NginxError::Template { path: path.clone(), source })?;
            (path.display().to_string(), text)
        }
        None => ("layer4.conf.j2 (built in)".to_owned(), DEFAULT_TEMPLATE.to_owned()),
    };
    let render_error = |e: minijinja::Error| {
        let mut detail = e.to_string();
        if let Some(line) = e.line() {
            detail = format!("line {line}: {detail}");
        }
        NginxError::Render { name: name.clone(), detail }
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder().keep_trailing_newline(true).trim_blocks(true).lstrip_blocks(true).build();
    env.set_syntax(syntax.map_err(render_error)?);
    env.add_template_owned("nginx", source).map_err(render_error)?;
    let live = servers.iter().filter(|s| !s.backup).count();
    let entries = |backup: bool| {
        let of_kind = servers.iter().filter(|s| s.backup == backup);
        of_kind
            .map(|s| context! { host => &s.host, port => s.port, instance => s.instance, origin => &s.origin })
            .collect::<Vec<_>>()
    };
    let mut origins: Vec<&str> = servers.iter().map(|s| s.origin.as_str()).collect();
    origins.sort_unstable();
    origins.dedup();
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs().max(1));
    let upstream: String =
        spec.app.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let ctx = context! {
        app => &spec.app,
        upstream => upstream,
        servers => entries(false),
        backup_servers => entries(true),
        live => live,
        backups => servers.len() - live,
        hosts => origins.len(),
        extra_hosts => &spec.upstream_hosts,
        server_name => &spec.server_name,
        listen => (spec.listen != "off").then_some(&spec.listen),
        listen_tls => &spec.listen_tls,
        redirect_to => spec.listen_tls.as_deref().and_then(crate::config::tls_port).map(|port| match port {
            443 => "https://$host$request_uri".to_owned(),
            port => format!("https://$host:{port}$request_uri"),
        }),
        ssl_certificate => spec.ssl_certificate.as_ref().map(|p| p.display().to_string()),
        ssl_certificate_key => spec.ssl_certificate_key.as_ref().map(|p| p.display().to_string()),
        access_log => &spec.access_log,
        max_fails => spec.max_fails,
        fail_timeout => secs(spec.fail_timeout),
        proxy_read_timeout => secs(spec.proxy_read_timeout),
        proxy_send_timeout => secs(spec.proxy_send_timeout),
        proxy_connect_timeout => secs(spec.proxy_connect_timeout),
    };
    env.get_template("nginx").and_then(|t| t.render(ctx)).map_err(render_error)
}

/// `nginx -t` on the render for `instances`, included in a minimal main config under a
/// temporary prefix (no root needed, nothing outside the temp folder touched). `nginx -t`
/// opens every log file and the access log's folder is root's, so the checked render
/// writes its access log into the prefix (a render of its own, so a copied template
/// that spells the directive differently is checked the same way); that the real
/// access log's folder exists is checked here, since `nginx -s reload` would not say.
pub fn check(spec: &NginxSpec, servers: &[Server]) -> Result<(), NginxError> {
    if let Some(folder) = Path::new(&spec.access_log).parent()
        && spec.access_log != "off"
        && !folder.is_dir()
    {
        return Err(NginxError::AccessLog(folder.to_owned()));
    }
    let tmp = tempfile::Builder::new()
        .prefix("l4nginx")
        .tempdir()
        .map_err(|source| NginxError::Write { path: std::env::temp_dir(), source })?;
    let dir = tmp.path();
    let conf = dir.join("layer4.conf");
    let d = dir.display();
    let mut probe = spec.clone();
    if probe.access_log != "off" {
        probe.access_log = format!("{d}/access.log");
    }
    let rendered = render(&probe, servers)?;
    write(&conf, &rendered)?;
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    include {};\n}}\n",
        conf.display()
    );
    write(&dir.join("nginx.conf"), &main)?;
    let prefix = format!("{d}/");
    let args = ["-t", "-q", "-p", &prefix, "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")];
    let out = Command::new(&spec.binary)
        .args(args)
        .output()
        .map_err(|source| NginxError::Run { command: format!("{} -t", spec.binary), source })?;
    if out.status.success() {
        Ok(())
    } else {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Err(NginxError::Check(text.trim().replace(&prefix, "")))
    }
}

/// Write `rendered` to `spec.output` atomically (a reader sees the old or the new file).
pub fn install(spec: &NginxSpec, rendered: &str) -> Result<(), NginxError> {
    if let Some(parent) = spec.output.parent() {
        std::fs::create_dir_all(parent).map_err(|source| NginxError::Write { path: parent.to_owned(), source })?;
    }
    crate::fsutil::atomic_write(&spec.output, rendered.as_bytes(), 0o644)
        .map_err(|source| NginxError::Write { path: spec.output.clone(), source })
}

/// What is installed at `spec.output` now, if it can be read.
pub fn installed(spec: &NginxSpec) -> Option<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut crate::nofollow::read(&spec.output).ok()?, &mut text).ok()?;
    Some(text)
}

/// Run `reload_command`.
pub fn reload(spec: &NginxSpec) -> Result<(), NginxError> {
    let command = spec.reload_command.join(" ");
    let (program, args) = spec
        .reload_command
        .split_first()
        .ok_or_else(|| NginxError::Failed { command: command.clone(), output: "empty command".into() })?;
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NginxError::Run { command: command.clone(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Err(NginxError::Failed { command, output: output.trim().to_owned() })
    }
}

fn write(path: &Path, text: &str) -> Result<(), NginxError> {
    std::fs::write(path, text).map_err(|source| NginxError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests;
