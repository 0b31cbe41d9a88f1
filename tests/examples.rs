//! Every example config in config/examples/ validates, through the same `check-config` a
//! user runs.

mod common;

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let o = std::process::Command::new(common::tandem_bin())
                .arg("check-config")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}:\n{}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} examples");
}
