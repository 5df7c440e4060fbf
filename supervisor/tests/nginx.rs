//! README "Nginx": a real nginx (Debian's, installed by `.ci/test`) in front of
//! real workers on l4ctl's sockets; the config follows `l4ctl scale` and a scale
//! through the API, a render that nginx rejects is never installed, and the access
//! log never holds a query string (a browser's token).

use std::process::Command;
use std::time::Duration;

use crate::helper::{Env, fd3_worker, free_ports, get, get_path, held_port, text, wait_for};

/// A private nginx under the test's folder, stopped when dropped.
pub(crate) struct Nginx {
    args: Vec<String>,
}

impl Nginx {
    pub(crate) fn start(env: &Env, include: &str) -> Nginx {
        let d = env.path("nginx-run");
        std::fs::create_dir_all(&d).unwrap();
        let d = d.display().to_string();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n include {include};\n}}\n"
        );
        std::fs::write(format!("{d}/nginx.conf"), conf).unwrap();
        let args: Vec<String> =
            ["-p", &format!("{d}/"), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let out = Command::new("nginx").args(&args).output().expect("nginx is installed (.ci/test installs it)");
        assert!(out.status.success(), "nginx did not start: {}", text(&out));
        Nginx { args }
    }

    pub(crate) fn reload_command(&self) -> String {
        format!("nginx {} -s reload", self.args.join(" "))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx").args(&self.args).args(["-s", "stop"]).output();
    }
}

#[test]
fn nginx_follows_scale_and_a_rejected_render_is_not_installed() {
    let (nginx_port, nginx_hold) = held_port();
    let app_port = free_ports(3);
    let app = format!(
        "[[apps]]\nname = \"web\"\nscript = \"python3\"\nargs = [\"worker.py\"]\ninstances = 2\nport = {app_port}\nready = \"notify\"\n"
    );
    let env = Env::new(&app);
    std::fs::write(env.path("worker.py"), fd3_worker("\"instance %s\\n\" % os.environ[\"L4_INSTANCE\"]")).unwrap();
    let access_log = env.path("nginx-run/access.log");
    let nginx_section = |reload: &str, template: &str| {
        format!(
            "[nginx]\nlisten = \"127.0.0.1:{nginx_port}\"\nserver_name = \"chat.test\"\noutput = \"nginx/layer4.conf\"\nauto_reload = true\nreload_command = {reload:?}\naccess_log = {:?}\n{template}\n{app}",
            access_log.display()
        )
    };
    env.write_config(&nginx_section("true", ""));
    env.start();
    let out = env.l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}", text(&out));
    let installed = env.path("nginx/layer4.conf");
    let first = std::fs::read_to_string(&installed).unwrap();
    assert_eq!(first.matches(&format!("server 127.0.0.1:{app_port} ")).count(), 1, "{first}");
    assert_eq!(first.matches("server 127.0.0.1:").count(), 2, "{first}");

    drop(nginx_hold);
    let nginx = Nginx::start(&env, &installed.display().to_string());
    env.write_config(&nginx_section(&nginx.reload_command(), ""));
    let body = wait_for(Duration::from_secs(10), "nginx to proxy", || get(nginx_port));
    assert!(body.starts_with("instance "), "{body}");
    // A browser's WebSocket URL carries its token: the access log has the path only.
    assert!(get_path(nginx_port, "/ws?token=eyJ.secret-token.sig").is_some());
    let logged = wait_for(Duration::from_secs(10), "the access log line", || {
        std::fs::read_to_string(&access_log).ok().filter(|t| t.contains("GET /ws HTTP/1.1"))
    });
    assert!(!logged.contains("secret-token") && !logged.contains("?token"), "{logged}");

    let out = env.l4(&["scale", "web", "3"]);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diagnose());
    assert!(text(&out).contains("installed (3 ready instance(s)) and nginx reloaded"), "{}", text(&out));
    let scaled = std::fs::read_to_string(&installed).unwrap();
    assert_eq!(scaled.matches("server 127.0.0.1:").count(), 3, "{scaled}");
    // least_conn spreads the requests: the new instance answers once nginx reloaded.
    wait_for(Duration::from_secs(10), "the third instance behind nginx", || {
        (get(nginx_port)? == "instance 2").then_some(())
    });

    // A scale through the API itself (a dashboard, say; here its Unix socket): the
    // daemon re-renders nginx too, and says so in its answer.
    let client = layer4_supervisor::client::Client::new(&env.home());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer: serde_json::Value =
        rt.block_on(client.post("/api/v1/apps/web/scale", serde_json::json!({ "instances": 2 }))).unwrap();
    assert_eq!(answer["nginx"]["ok"], true, "{answer}");
    assert!(
        answer["nginx"]["message"].as_str().unwrap().contains("(2 ready instance(s)) and nginx reloaded"),
        "{answer}"
    );
    let scaled = std::fs::read_to_string(&installed).unwrap();
    assert_eq!(scaled.matches("server 127.0.0.1:").count(), 2, "{scaled}");

    std::fs::write(env.path("broken.j2"), "upstream {{ upstream }} {\n").unwrap();
    env.write_config(&nginx_section(&nginx.reload_command(), "template = \"broken.j2\""));
    let out = env.l4(&["nginx", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = env.l4(&["nginx", "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nginx -t rejected the rendered config"), "{}", text(&out));
    assert!(text(&out).contains("is unchanged"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), scaled, "the live config stays");
    assert!(get(nginx_port).is_some(), "nginx still serves");
}
