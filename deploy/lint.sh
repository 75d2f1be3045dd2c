#!/usr/bin/env bash
# Offline checks of the SAM template and the application stack (deploy/app-stack.yaml):
# cfn-lint, sam validate --lint, checkov, each over every deployment variant (Scope single
# and shared, ReplicaRegions unset/set, alerting and KMS on/off: deploy/variants.py renders
# one template per variant with those values as defaults and checks the values the
# intrinsics build), and the four sample rotation events. Creates the pinned tool venvs
# under the repo root when missing or when their requirements file changed:
#   .venv-lint  <- deploy/requirements-lint.txt  (cfn-lint, checkov)
#   .venv-sam   <- deploy/requirements-sam.txt   (aws-sam-cli)
# Needs no AWS account, credentials or network (only PyPI, the first time).
# One line per check; exits non-zero if any check has a finding.
#
# Environment: PYTHON (interpreter for the venvs, default python3), TEMPLATE (default
# template.yaml at the repo root; the variants are always rendered from template.yaml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TEMPLATE="${TEMPLATE:-$ROOT/template.yaml}"
APP_TEMPLATE="$ROOT/deploy/app-stack.yaml"
LINT_VENV="$ROOT/.venv-lint"
SAM_VENV="$ROOT/.venv-sam"

# Make every tool stay offline and away from any real account: dummy credentials and a
# fixed region (sam validate needs one), no profile, no instance metadata, no telemetry,
# no update checks, no Prisma Cloud downloads.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE || true

# ensure_venv DIR REQUIREMENTS: create DIR from REQUIREMENTS unless it already matches.
ensure_venv() {
  local venv="$1" req="$2" stamp="$1/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "setting up ${venv#"$ROOT"/} from ${req#"$ROOT"/} ..." >&2
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-input -r "$req"
  echo "$want" >"$stamp"
}

ensure_venv "$LINT_VENV" "$ROOT/deploy/requirements-lint.txt"
ensure_venv "$SAM_VENV" "$ROOT/deploy/requirements-sam.txt"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
failed=0

# report NAME RC SUMMARY LOG: print the one-line result; on failure the tool's output.
report() {
  local name="$1" rc="$2" summary="$3" log="$4"
  if [[ "$rc" -eq 0 ]]; then
    printf '%-14s ok    %s\n' "$name:" "$summary"
  else
    printf '%-14s FAIL  %s\n' "$name:" "$summary"
    sed 's/^/    /' "$log"
    failed=1
  fi
}

seconds() { echo $((SECONDS - $1))s; }

# 0. Render the variants and check the values CloudFormation would compute for each.
t=$SECONDS rc=0
RENDERS="$OUT/renders"
"$LINT_VENV/bin/python" "$ROOT/deploy/variants.py" "$RENDERS" >"$OUT/variants.log" 2>&1 || rc=$?
nvariants=$(find "$RENDERS" -name '*.json' 2>/dev/null | wc -l)
report variants "$rc" "$nvariants variants rendered, documents/replicas/scope/concurrency checked, $(seconds $t)" "$OUT/variants.log"
mapfile -t renders < <(find "$RENDERS" -name '*.json' | sort)
# sam validate takes ~4 s a template: the two scopes with every option on suffice for the
# SAM translation (the defaults variant is the template itself).
main_renders=("$RENDERS/single-replicas.json" "$RENDERS/single-existing-secret.json" "$RENDERS/shared-alerts-kms.json")

# 1. cfn-lint (errors, warnings and informational findings all fail): the two templates as
#    written, then every variant.
t=$SECONDS rc=0
"$LINT_VENV/bin/cfn-lint" --include-checks I -- "$TEMPLATE" "$APP_TEMPLATE" "${renders[@]}" \
  >"$OUT/cfn-lint.log" 2>&1 || rc=$?
report cfn-lint "$rc" "cfn-lint $("$LINT_VENV/bin/cfn-lint" --version | awk '{print $2}'), $((2 + ${#renders[@]})) templates, $(seconds $t)" "$OUT/cfn-lint.log"

# 2. sam validate --lint (SAM translation + cfn-lint as bundled with SAM CLI), on the
#    template and on three variants of it.
t=$SECONDS rc=0
: >"$OUT/sam.log"
for f in "$TEMPLATE" "${main_renders[@]}"; do
  echo "== ${f#"$ROOT"/}" >>"$OUT/sam.log"
  "$SAM_VENV/bin/sam" validate --lint --region us-east-1 --template-file "$f" \
    >>"$OUT/sam.log" 2>&1 || rc=$?
done
report "sam validate" "$rc" "sam $("$SAM_VENV/bin/sam" --version | awk '{print $NF}'), $((1 + ${#main_renders[@]})) templates, $(seconds $t)" "$OUT/sam.log"

# 3. checkov, CloudFormation framework, over the templates and every variant in one run.
#    Skips live in the templates, each with its reason
#    (Metadata: checkov: skip: - id: ... comment: ...).
t=$SECONDS rc=0
CHECKOV_DIR="$OUT/checkov-in"
mkdir -p "$CHECKOV_DIR"
cp "$TEMPLATE" "$CHECKOV_DIR/template.yaml"
cp "$APP_TEMPLATE" "$CHECKOV_DIR/app-stack.yaml"
cp "${renders[@]}" "$CHECKOV_DIR/"
"$LINT_VENV/bin/checkov" --directory "$CHECKOV_DIR" --framework cloudformation --skip-download \
  --output json >"$OUT/checkov.json" 2>"$OUT/checkov.err" || rc=$?
summary="$("$LINT_VENV/bin/python" - "$OUT/checkov.json" <<'PY' 2>>"$OUT/checkov.err"
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
passed = failed = 0
skipped, failures, files = set(), [], set()
for r in reports:
    res = r.get("results", {})
    for kind in ("passed_checks", "failed_checks", "skipped_checks"):
        files.update(c.get("file_path") for c in res.get(kind, []))
    passed += len(res.get("passed_checks", []))
    failed += len(res.get("failed_checks", []))
    skipped.update(c["check_id"] for c in res.get("skipped_checks", []))
    failures += [f'{c["file_path"]} {c["check_id"]} {c["resource"]}: {c["check_name"]}' for c in res.get("failed_checks", [])]
print(f"{len(files)} templates, {passed} passed, {failed} failed, skipped: {', '.join(sorted(skipped)) or 'none'}")
for f in failures:
    print(f, file=sys.stderr)
PY
)" || { summary="could not read checkov's report"; rc=1; }
report checkov "$rc" "checkov $("$LINT_VENV/bin/checkov" --version), $summary, $(seconds $t)" "$OUT/checkov.err"

# 4. The sample events: the four steps, one secret, one token pair.
t=$SECONDS rc=0
"$LINT_VENV/bin/python" - "$ROOT/events" >"$OUT/events.log" 2>&1 <<'PY' || rc=$?
import json, sys, uuid, pathlib
d = pathlib.Path(sys.argv[1])
steps = ["createSecret", "setSecret", "testSecret", "finishSecret"]
events = [json.loads((d / f"{s}.json").read_text()) for s in steps]
for s, e in zip(steps, events):
    assert set(e) == {"Step", "SecretId", "ClientRequestToken", "RotationToken"}, f"{s}: keys {sorted(e)}"
    assert e["Step"] == s, f"{s}.json has Step {e['Step']!r}"
    assert e["SecretId"].startswith("arn:aws:secretsmanager:"), f"{s}: SecretId is not a secret ARN"
    uuid.UUID(e["ClientRequestToken"]); uuid.UUID(e["RotationToken"])
for key in ("SecretId", "ClientRequestToken", "RotationToken"):
    assert len({e[key] for e in events}) == 1, f"{key} differs between the events"
PY
report events "$rc" "4 rotation steps, same secret and tokens, $(seconds $t)" "$OUT/events.log"

exit "$failed"
