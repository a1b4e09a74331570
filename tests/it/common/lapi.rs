//! A real CrowdSec Local API (the Debian `crowdsec` package) for one test: its own config,
//! SQLite database and port in a temporary directory, started with `-no-cs -no-capi` (no
//! agent, no Central API, no systemd) and killed on drop.
//!
//! Start it inside the test's network namespace (from [`super::netns::run_in`]): the LAPI,
//! `cscli` and `sipban` then share a private loopback, so every test may use the same port.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The machine `cscli decisions add` logs in as.
const LOCAL_MACHINE: &str = "sipban-test-cli";
const LOCAL_PASSWORD: &str = "cliPassw0rdForTests";

pub struct Lapi {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub url: String,
}

/// The `crowdsec` binary is installed (`scripts/test.sh` installs it); otherwise skip (a
/// panic under `CI=true`).
pub fn available() -> bool {
    super::netns::require_program("crowdsec") && super::netns::require_program("cscli")
}

fn config(dir: &Path, port: u16) -> String {
    let t = std::fs::read_to_string("/etc/crowdsec/config.yaml")
        .expect("read /etc/crowdsec/config.yaml");
    let d = dir.display();
    let mut out = String::new();
    let mut skip_online = false;
    for line in t.lines() {
        let trimmed = line.trim_start();
        if skip_online {
            skip_online = false;
            if trimmed.starts_with("credentials_path:") {
                continue;
            }
        }
        let replaced = if trimmed.starts_with("online_client:") {
            skip_online = true;
            continue;
        } else if trimmed.starts_with("daemonize:") {
            "  daemonize: false".to_string()
        } else if trimmed.starts_with("log_media:") {
            "  log_media: stdout".to_string()
        } else if trimmed.starts_with("log_dir:") {
            format!("  log_dir: {d}/log/")
        } else if trimmed.starts_with("db_path:") {
            format!("  db_path: {d}/crowdsec.db")
        } else if trimmed.starts_with("listen_uri:") {
            format!("    listen_uri: 127.0.0.1:{port}")
        } else if trimmed.starts_with("credentials_path: /etc/crowdsec/local_api") {
            format!("    credentials_path: {d}/local_api_credentials.yaml")
        } else if line == "  enabled: true" {
            // prometheus
            "  enabled: false".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

impl Lapi {
    /// Start a LAPI on 127.0.0.1:`port` of the current namespace and wait until it answers.
    pub fn start(port: u16) -> Lapi {
        let dir = tempfile::Builder::new()
            .prefix("sipban-lapi")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), config(dir.path(), port)).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("local_api_credentials.yaml"),
            format!("url: {url}\n"),
        )
        .unwrap();
        let mut lapi = Lapi {
            dir,
            child: None,
            port,
            url,
        };
        // The CLI's machine first (it writes the credentials file `cscli decisions` uses).
        let creds = lapi.dir.path().join("local_api_credentials.yaml");
        lapi.cscli_ok(&[
            "machines",
            "add",
            LOCAL_MACHINE,
            "-p",
            LOCAL_PASSWORD,
            "-f",
            &creds.display().to_string(),
            "-u",
            &lapi.url.clone(),
        ]);
        let log = std::fs::File::create(lapi.dir.path().join("lapi.log")).unwrap();
        let child = Command::new("crowdsec")
            .arg("-c")
            .arg(lapi.config_path())
            .args(["-no-cs", "-no-capi"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start crowdsec");
        lapi.child = Some(child);
        lapi.wait_ready();
        lapi
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = format!("127.0.0.1:{}", self.port);
        loop {
            if TcpStream::connect(&addr).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("crowdsec exited ({st}) before listening:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the LAPI did not listen within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lapi.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Run `cscli -c CONFIG args...`.
    pub fn cscli(&self, args: &[&str]) -> Output {
        Command::new("cscli")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cscli")
    }

    pub fn cscli_ok(&self, args: &[&str]) -> Output {
        let o = self.cscli(args);
        assert!(
            o.status.success(),
            "cscli {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    pub fn add_bouncer(&self, name: &str, key: &str) {
        self.cscli_ok(&["bouncers", "add", name, "-k", key]);
    }

    pub fn add_machine(&self, id: &str, password: &str) {
        self.cscli_ok(&["machines", "add", id, "-p", password, "-f", "/dev/null"]);
    }

    /// `cscli decisions add ARGS --type ban` (e.g. `["--ip", "45.1.2.3", "--duration", "2h"]`).
    pub fn ban(&self, args: &[&str]) {
        let mut a = vec!["decisions", "add", "--type", "ban"];
        a.extend_from_slice(args);
        self.cscli_ok(&a);
    }

    pub fn delete(&self, args: &[&str]) {
        let mut a = vec!["decisions", "delete"];
        a.extend_from_slice(args);
        self.cscli_ok(&a);
    }

    /// `cscli alerts list -a -o json` (without `-a` it hides alerts of other origins).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let o = self.cscli_ok(&["alerts", "list", "-a", "-o", "json", "-l", "0"]);
        match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            Ok(serde_json::Value::Array(a)) => a,
            Ok(serde_json::Value::Null) => Vec::new(),
            other => panic!(
                "cscli alerts list: {other:?}: {}",
                String::from_utf8_lossy(&o.stdout)
            ),
        }
    }

    /// Stop the LAPI (it is down until dropped).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}
