//! Command-line parsing and dispatch tests.

use super::manual::{completions, man};
use crate::util::exec::CommandRunExt;

#[test]
fn completions_are_generated_from_the_clap_definitions() {
    let mut bash = Vec::new();
    completions(clap_complete::Shell::Bash, &mut bash).unwrap();
    let text = String::from_utf8(bash).unwrap();
    for word in [
        "kiln",
        "build",
        "publish",
        "completions",
        "--junit",
        "--store",
    ] {
        assert!(
            text.contains(word),
            "{word} missing from the bash completions"
        );
    }
    // bash itself accepts the script.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kiln.bash");
    std::fs::write(&f, &text).unwrap();
    std::process::Command::new("bash")
        .arg("-n")
        .arg(&f)
        .run()
        .unwrap_or_else(|e| panic!("{e:#}"));
    for shell in [clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        let mut out = Vec::new();
        completions(shell, &mut out).unwrap();
        assert!(
            String::from_utf8(out).unwrap().contains("publish"),
            "{shell}"
        );
    }
}

#[test]
fn man_pages_are_generated_for_kiln_and_each_command() {
    let mut page = Vec::new();
    man(None, &mut page).unwrap();
    let page = String::from_utf8(page).unwrap();
    assert!(page.starts_with(".ie"), "{page}");
    assert!(page.contains(".TH kiln 1"), "{page}");
    assert!(page.contains("kiln\\-build(1)"), "{page}");
    let mut page = Vec::new();
    man(Some("test"), &mut page).unwrap();
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(".TH kiln-test 1"), "{page}");
    for option in ["\\-\\-junit", "\\-\\-store"] {
        assert!(page.contains(option), "{option} missing from {page}");
    }
    let e = man(Some("nope"), &mut Vec::new()).unwrap_err();
    assert_eq!(crate::util::error::exit_code(&e), 2);
}
