//! `kiln test`: a verdict for people, check by check, with the boot's phases
//! and, on failure, the last lines of the console.

use std::io::{self, Write};

use crate::store::verdict::Verdict;

/// A verdict: one line a check, the phases, the outcome, and on failure
/// `console_tail` (the console's last lines).
pub fn verdict(out: &mut dyn Write, v: &Verdict, console_tail: &str) -> io::Result<()> {
    writeln!(
        out,
        "kiln test {} ({}) on {}",
        v.image, v.image_digest, v.accel
    )?;
    for c in &v.checks {
        writeln!(
            out,
            "  {}  {:<48} {:>6.1}s  {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.secs,
            c.detail
        )?;
    }
    let ph = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"));
    writeln!(
        out,
        "phases: firmware {}, kernel {}, init {}, ready {}",
        ph(v.phases.firmware),
        ph(v.phases.kernel),
        ph(v.phases.init),
        ph(v.phases.ready)
    )?;
    if v.passed {
        writeln!(out, "verdict: PASS in {:.1}s", v.duration_secs)?;
    } else {
        writeln!(
            out,
            "verdict: FAIL in {:.1}s: first failing check: {}",
            v.duration_secs,
            v.failed_check.as_deref().unwrap_or("?")
        )?;
        writeln!(out, "console (last lines):\n{console_tail}")?;
    }
    if let Some(log) = &v.console_log {
        writeln!(out, "console log: {}", log.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::store::verdict::{CheckResult, Phases};

    fn verdict_of(passed: bool) -> Verdict {
        Verdict {
            schema: "kiln.verdict/v1".into(),
            image_digest: EMPTY.parse().unwrap(),
            image: "hello 1.0".into(),
            passed,
            failed_check: (!passed).then(|| "console: hello".into()),
            checks: vec![
                CheckResult {
                    name: "console: kiln-init: switching root".into(),
                    passed: true,
                    secs: 8.04,
                    detail: "matched".into(),
                },
                CheckResult {
                    name: "console: hello".into(),
                    passed,
                    secs: 1.5,
                    detail: if passed {
                        "matched"
                    } else {
                        "timed out after 30 s"
                    }
                    .into(),
                },
            ],
            phases: Phases {
                firmware: Some(5.42),
                kernel: Some(7.7),
                init: None,
                ready: None,
            },
            duration_secs: 17.04,
            qemu_version: "QEMU emulator version 7.2.15".into(),
            firmware: "OVMF_CODE_4M.fd".into(),
            accel: "tcg".into(),
            started_at: "2024-05-01T12:00:00Z".into(),
            kiln_version: "0.1.0".into(),
            console_log: Some("/tmp/console.log".into()),
            secure_boot: false,
        }
    }

    #[test]
    fn passing_and_failing_verdicts() {
        let pass = text(|out| verdict(out, &verdict_of(true), "unused"));
        assert_eq!(
            pass,
            format!(
                "kiln test hello 1.0 ({EMPTY}) on tcg\n\
                 \x20 PASS  console: kiln-init: switching root                  8.0s  matched\n\
                 \x20 PASS  console: hello                                      1.5s  matched\n\
                 phases: firmware 5.4s, kernel 7.7s, init -, ready -\n\
                 verdict: PASS in 17.0s\n\
                 console log: /tmp/console.log\n"
            )
        );
        let fail =
            text(|out| verdict(out, &verdict_of(false), "[  1.0] boot\nkiln-init: FATAL: x"));
        assert!(
            fail.ends_with(
                "  FAIL  console: hello                                      1.5s  timed out after 30 s\n\
                 phases: firmware 5.4s, kernel 7.7s, init -, ready -\n\
                 verdict: FAIL in 17.0s: first failing check: console: hello\n\
                 console (last lines):\n[  1.0] boot\nkiln-init: FATAL: x\n\
                 console log: /tmp/console.log\n"
            ),
            "{fail}"
        );
    }
}
