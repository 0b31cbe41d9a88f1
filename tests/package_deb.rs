//! The Debian package: scripts/package builds it from this build's binary; dpkg installs it
//! on this machine; the installed binary checks the installed example config; the units
//! pass `systemd-analyze verify` (which does find a broken unit here); dpkg purges it all.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Purges the package on drop, whatever happened.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        sh_quiet("dpkg --purge tandem >/dev/null 2>&1");
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_package_installs_checks_its_config_and_purges() {
    let (_, status) = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "tandem"]));
    let installed_before = status.contains("install ok installed");
    assert!(
        !installed_before,
        "a tandem package is installed on this machine already: the test would replace it"
    );
    let (ok, out) = run(Command::new(script("scripts/package"))
        .arg("--binary")
        .arg(tandem_bin()));
    assert!(ok, "scripts/package: {out}");
    let deb = out.lines().last().unwrap().trim().to_string();
    let deb = script(&deb);
    assert!(deb.exists(), "{}", deb.display());
    assert!(
        deb.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("tandem_")
            && deb.to_str().unwrap().ends_with("_amd64.deb"),
        "{}",
        deb.display()
    );
    let (_, info) = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("librte-eal23"), "{info}");
    assert!(info.contains("librte-net-af-packet23"), "{info}");

    let _guard = Installed;
    let (ok, out) = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(ok, "dpkg -i: {out}");
    for f in [
        "/usr/sbin/tandem",
        "/lib/systemd/system/tandem.service",
        "/lib/systemd/system/tandem-hugepages.service",
        "/etc/tandem/tandem.toml",
        "/etc/default/tandem",
        "/usr/share/tandem/setup",
        "/usr/share/tandem/grafana/tandem-dashboard.json",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let (_, conffiles) = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "tandem"]));
    assert!(conffiles.contains("/etc/tandem/tandem.toml"), "{conffiles}");
    let (ok, out) =
        run(Command::new("/usr/sbin/tandem").args(["check-config", "/etc/tandem/tandem.toml"]));
    assert!(ok, "check-config: {out}");
    assert!(out.contains("ok"), "{out}");
    let (ok, out) = run(Command::new("systemd-analyze").args([
        "verify",
        "/lib/systemd/system/tandem.service",
        "/lib/systemd/system/tandem-hugepages.service",
    ]));
    assert!(
        ok && !out.contains("tandem"),
        "systemd-analyze verify: {out}"
    );
    // The same check finds a broken unit on this machine.
    let s = Scratch::new("unit");
    let broken = s.path("tandem-broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string("/lib/systemd/system/tandem.service")
            .unwrap()
            .replace("Type=notify", "Type=notifyy"),
    )
    .unwrap();
    let (_, out) = run(Command::new("systemd-analyze").arg("verify").arg(&broken));
    assert!(
        out.contains("notifyy"),
        "a broken unit passes verify: {out}"
    );

    let (ok, out) = run(Command::new("dpkg").args(["--purge", "tandem"]));
    assert!(ok, "dpkg --purge: {out}");
    assert!(!Path::new("/usr/sbin/tandem").exists());
    assert!(!Path::new("/etc/tandem/tandem.toml").exists());
}
