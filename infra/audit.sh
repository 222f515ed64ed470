#!/usr/bin/env bash
# Audit the installed Python environment for known vulnerabilities (pip-audit).
#
#   infra/audit.sh            fail (exit 1) on any known vulnerability not in .ci/audit-ignore.txt
#   AUDIT_REQUIRED=1 infra/audit.sh   also fail (exit 2) when the audit cannot run
#
# pip-audit needs the vulnerability database (PyPI's JSON API or OSV). Where it cannot reach
# it (offline, or a registry mirror that serves packages but not the JSON API, where every
# package comes back "not found on PyPI"), the audit is skipped with a clear message instead
# of claiming "no known vulnerabilities". The ignore list documents every accepted finding.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
IGNORE_FILE="${AUDIT_IGNORE_FILE:-.ci/audit-ignore.txt}"

skip() {
    echo "audit skipped: $1"
    if [ "${AUDIT_REQUIRED:-0}" = "1" ]; then exit 2; fi
    exit 0
}

"$PYTHON" -m pip_audit --version >/dev/null 2>&1 || skip "pip-audit is not installed (pip install pip-audit)"

ignores=()
if [ -f "$IGNORE_FILE" ]; then
    while read -r id _; do
        case "$id" in ""|\#*) continue ;; esac
        ignores+=(--ignore-vuln "$id")
    done < "$IGNORE_FILE"
fi

report="$(mktemp)"; errors="$(mktemp)"
trap 'rm -f "$report" "$errors"' EXIT
# --local: the packages of this environment; --skip-editable: skinscan itself is not on PyPI.
"$PYTHON" -m pip_audit --local --skip-editable --progress-spinner off --format json \
    ${ignores[@]+"${ignores[@]}"} ${AUDIT_SERVICE:+--vulnerability-service "$AUDIT_SERVICE"} \
    >"$report" 2>"$errors"
status=$?

if ! [ -s "$report" ]; then
    if grep -qiE "connection|resolve|timed? ?out|unreachable|network|ssl" "$errors"; then
        skip "no access to the vulnerability database ($(grep -m1 -oiE '[A-Za-z]*(Error|Exception)[^:]*' "$errors" | head -1))"
    fi
    echo "audit failed to run (pip-audit exit $status):"; tail -5 "$errors"; exit 2
fi

"$PYTHON" - "$report" "$status" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
audited = [d for d in deps if not d.get("skip_reason")]
vulnerable = [d for d in audited if d.get("vulns")]
if not audited:
    reason = skipped[0]["skip_reason"] if skipped else "nothing to audit"
    print(f"audit skipped: no access to the vulnerability database "
          f"({len(skipped)} packages could not be looked up, e.g. {reason!r})")
    sys.exit(3)
for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
        print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
if skipped:
    print(f"note: {len(skipped)} packages could not be audited (not on the index): "
          + ", ".join(d["name"] for d in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
print(f"audit: {len(audited)} packages checked, {len(vulnerable)} with known vulnerabilities")
sys.exit(1 if vulnerable else 0)
PY
result=$?
if [ "$result" = "3" ]; then
    [ "${AUDIT_REQUIRED:-0}" = "1" ] && exit 2
    exit 0
fi
exit "$result"
