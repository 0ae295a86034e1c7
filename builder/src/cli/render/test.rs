//! `kiln test`: a verdict for people, check by check, with the boot's phases
//! and, on failure, the last lines of the console; and as JUnit XML (the
//! Ant/Jenkins schema CI systems read), one testcase per check, a failure
//! typed by how its step ended (`store::verdict::Outcome`). `--json` prints
//! the verdict as it is stored, each check with its outcome.

use std::io::{self, Write};

use crate::store::verdict::Verdict;
use crate::util::printable::{self, PrintableExt as _};

/// A verdict: one line a check, the phases, the outcome, and on failure
/// `console_tail` (the console's last lines).
pub fn verdict(out: &mut dyn Write, v: &Verdict, console_tail: &str) -> io::Result<()> {
    writeln!(
        out,
        "kiln test {} ({}) on {}",
        v.image.printable(),
        v.image_digest.printable(),
        v.accel.printable()
    )?;
    for c in &v.checks {
        writeln!(
            out,
            "  {}  {:<48} {:>6.1}s  {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name.printable(),
            c.secs,
            c.detail.printable()
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
            v.failed_check.as_deref().unwrap_or("?").printable()
        )?;
        writeln!(
            out,
            "console (last lines):\n{}",
            printable::lines(console_tail)
        )?;
    }
    if let Some(log) = &v.console_log {
        writeln!(out, "console log: {}", log.display().printable())?;
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one testcase per check; a failed one carries its outcome's
/// kind as the failure type, its detail as the message and `console_tail`
/// as its output.
pub fn junit(out: &mut dyn Write, v: &Verdict, console_tail: &str) -> io::Result<()> {
    let failures = v.checks.iter().filter(|c| !c.passed).count();
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<testsuites tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        v.checks.len(),
        v.duration_secs
    )?;
    writeln!(
        out,
        "  <testsuite name=\"kiln test {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        xml_escape(&v.image),
        v.checks.len(),
        v.duration_secs,
        xml_escape(&v.started_at)
    )?;
    writeln!(out, "    <properties>")?;
    for (name, value) in [
        ("image_digest", v.image_digest.to_string()),
        ("accel", v.accel.clone()),
        ("qemu", v.qemu_version.clone()),
    ] {
        writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            xml_escape(&value)
        )?;
    }
    writeln!(out, "    </properties>")?;
    let class = xml_escape(&v.image.replace(' ', "-"));
    for c in &v.checks {
        write!(
            out,
            "    <testcase classname=\"kiln.{class}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&c.name),
            c.secs
        )?;
        if c.passed {
            writeln!(out, "/>")?;
        } else {
            let detail = xml_escape(&c.detail);
            writeln!(out, ">")?;
            writeln!(
                out,
                "      <failure type=\"{}\" message=\"{detail}\">{detail}</failure>",
                xml_escape(&c.kind())
            )?;
            writeln!(
                out,
                "      <system-out>{}</system-out>",
                xml_escape(console_tail)
            )?;
            writeln!(out, "    </testcase>")?;
        }
    }
    writeln!(out, "  </testsuite>\n</testsuites>")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::store::verdict::{
        CheckResult, ConsoleOutcome, HttpOutcome, Phases, ShutdownOutcome, Stop,
    };
    use crate::util::exec::CommandRunExt;

    fn verdict_of(passed: bool) -> Verdict {
        let hello = if passed {
            ConsoleOutcome::Seen { after_secs: 1.5 }
        } else {
            ConsoleOutcome::NotSeen { timeout: 30 }
        };
        Verdict {
            schema: "kiln.verdict/v1".into(),
            image_digest: EMPTY.parse().unwrap(),
            image: "hello 1.0".into(),
            passed,
            failed_check: (!passed).then(|| "console[1] hello".into()),
            checks: vec![
                CheckResult::new(
                    "console[0] kiln-init: switching root",
                    8.04,
                    ConsoleOutcome::Seen { after_secs: 8.04 },
                ),
                CheckResult::new("console[1] hello", 9.54, hello),
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
                 \x20 PASS  console[0] kiln-init: switching root                8.0s  seen after 8.0 s\n\
                 \x20 PASS  console[1] hello                                    9.5s  seen after 1.5 s\n\
                 phases: firmware 5.4s, kernel 7.7s, init -, ready -\n\
                 verdict: PASS in 17.0s\n\
                 console log: /tmp/console.log\n"
            )
        );
        let fail =
            text(|out| verdict(out, &verdict_of(false), "[  1.0] boot\nkiln-init: FATAL: x"));
        assert!(
            fail.ends_with(
                "  FAIL  console[1] hello                                    9.5s  not seen within 30 s\n\
                 phases: firmware 5.4s, kernel 7.7s, init -, ready -\n\
                 verdict: FAIL in 17.0s: first failing check: console[1] hello\n\
                 console (last lines):\n[  1.0] boot\nkiln-init: FATAL: x\n\
                 console log: /tmp/console.log\n"
            ),
            "{fail}"
        );
    }

    /// A boot the overall timeout stopped: the waiting check says so, and
    /// the `timeout` check is the failing one.
    fn timed_out() -> Verdict {
        let stop = Stop::Timeout { secs: 25 };
        let mut v = verdict_of(false);
        v.failed_check = Some("timeout".into());
        v.checks = vec![
            CheckResult::new(
                "http[0] GET :8080/<x>",
                20.0,
                HttpOutcome::Stopped {
                    timeout: 30,
                    stop: stop.clone(),
                },
            ),
            CheckResult::new("timeout", 25.0, stop),
        ];
        v
    }

    #[test]
    fn a_timed_out_verdict_for_people() {
        let out = text(|out| verdict(out, &timed_out(), "tail"));
        assert!(
            out.contains(
                "  FAIL  http[0] GET :8080/<x>                              20.0s  within 30 s: overall timeout of 25 s reached\n\
                 \x20 FAIL  timeout                                            25.0s  overall timeout of 25 s reached\n"
            ),
            "{out}"
        );
        assert!(out.contains("first failing check: timeout\n"), "{out}");
    }

    #[test]
    fn json_carries_each_outcome_beside_passed_and_detail() {
        let mut out = Vec::new();
        super::super::json(&mut out, &timed_out()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let http = &v["checks"][0];
        assert_eq!(http["passed"], false);
        assert_eq!(
            http["detail"],
            "within 30 s: overall timeout of 25 s reached"
        );
        assert_eq!(
            http["outcome"],
            serde_json::json!({"http": {"kind": "stopped", "timeout": 30, "stop": {"kind": "timeout", "secs": 25}}})
        );
        assert_eq!(
            v["checks"][1]["outcome"],
            serde_json::json!({"stopped": {"kind": "timeout", "secs": 25}})
        );
    }

    #[test]
    fn junit_types_each_failure_by_its_outcome() {
        let mut v = timed_out();
        v.checks.insert(
            0,
            CheckResult::new(
                "shutdown",
                1.0,
                ShutdownOutcome::PoweredOff {
                    status: "exit status: 0".into(),
                },
            ),
        );
        let x = text(|out| junit(out, &v, "kiln-init: \"FATAL\" & <more>\x1b[2K"));
        assert_eq!(
            x,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <testsuites tests=\"3\" failures=\"2\" time=\"17.040\">\n\
                 \x20 <testsuite name=\"kiln test hello 1.0\" tests=\"3\" failures=\"2\" errors=\"0\" time=\"17.040\" timestamp=\"2024-05-01T12:00:00Z\">\n\
                 \x20   <properties>\n\
                 \x20     <property name=\"image_digest\" value=\"{EMPTY}\"/>\n\
                 \x20     <property name=\"accel\" value=\"tcg\"/>\n\
                 \x20     <property name=\"qemu\" value=\"QEMU emulator version 7.2.15\"/>\n\
                 \x20   </properties>\n\
                 \x20   <testcase classname=\"kiln.hello-1.0\" name=\"shutdown\" time=\"1.000\"/>\n\
                 \x20   <testcase classname=\"kiln.hello-1.0\" name=\"http[0] GET :8080/&lt;x&gt;\" time=\"20.000\">\n\
                 \x20     <failure type=\"http.stopped.timeout\" message=\"within 30 s: overall timeout of 25 s reached\">within 30 s: overall timeout of 25 s reached</failure>\n\
                 \x20     <system-out>kiln-init: &quot;FATAL&quot; &amp; &lt;more&gt;[2K</system-out>\n\
                 \x20   </testcase>\n\
                 \x20   <testcase classname=\"kiln.hello-1.0\" name=\"timeout\" time=\"25.000\">\n\
                 \x20     <failure type=\"stopped.timeout\" message=\"overall timeout of 25 s reached\">overall timeout of 25 s reached</failure>\n\
                 \x20     <system-out>kiln-init: &quot;FATAL&quot; &amp; &lt;more&gt;[2K</system-out>\n\
                 \x20   </testcase>\n\
                 \x20 </testsuite>\n\
                 </testsuites>\n"
            )
        );
        // Well-formed for an outside XML parser, which finds the types.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("j.xml");
        std::fs::write(&f, &x).unwrap();
        let out = Command::new("python3")
            .arg("-c")
            .arg("import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(len(r.findall('.//testcase')), ' '.join(f.get('type') for f in r.iter('failure')))")
            .arg(&f)
            .run_get_string()
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(out.trim(), "3 http.stopped.timeout stopped.timeout");
    }
}
