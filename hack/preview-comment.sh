#!/usr/bin/env bash
# Writes, on stdout, the Markdown of the pull request comment that shows a
# `pulumi preview`: its outcome, the planned changes that need an admin's
# `pulumi up`, and the preview's text in a code block. The preview's text
# comes from the pull request, so the block's fence is one backtick longer
# than the longest run of backticks in it: the text cannot close it.
#
# Usage: OUTCOME=success|failure HEAD_SHA=<sha> RUN_URL=<url> \
#          hack/preview-comment.sh <preview text file> <admin changes file>
# The first line is the marker the workflow finds its earlier comment by.
#
# With MODEL_REPORT set (the pull request's model/artifacts/report.json),
# the comment also shows what the pull request does to the model
# (hack/model-change): its report beside MLOPS_BASELINE_REPORT's (the
# default branch's, if it has one), with the fingerprints from the
# preview's event log PREVIEW_EVENTS, or that the model is unchanged.
set -euo pipefail

report=${1:?usage: hack/preview-comment.sh <preview text file> <admin changes file>}
admin=${2:?usage: hack/preview-comment.sh <preview text file> <admin changes file>}
marker='<!-- pulumi-preview: mlops/dev -->'

case "${OUTCOME:-}" in
  success) status=':white_check_mark: succeeded' ;;
  failure) status=':x: failed' ;;
  *) status=':x: did not run (see the logs)' ;;
esac

# A comment holds at most 65536 characters: keep the end of the preview,
# where the resource summary and any error are.
text=$(tail -c 60000 "$report" 2>/dev/null || true)
longest=$({ grep -o '`\+' <<<"$text" || true; } | awk '{ if (length($0) > n) n = length($0) } END { print n + 0 }')
fence='```'
while ((${#fence} <= longest)); do fence+='`'; done

echo "$marker"
echo "#### :tropical_drink: \`pulumi preview\` of stack \`mlops/dev\`: $status"
echo
sha=${HEAD_SHA:-unknown}
echo "Commit ${sha:0:7} · [logs](${RUN_URL:-}) · merging deploys this to the dev stack."
echo
if [[ -n ${MODEL_REPORT:-} ]]; then
  if ! go run ./hack/model-change -baseline "${MLOPS_BASELINE_REPORT:-}" -events "${PREVIEW_EVENTS:-}" "$MODEL_REPORT"; then
    echo "Could not compare the model's report with the default branch's: see the logs of this step."
  fi
  echo
fi
if [[ -s $admin ]]; then
  echo "> [!WARNING]"
  echo "> **Needs an admin before merging.** CI cannot apply this plan."
  echo
  cat "$admin"
  echo
fi
echo '<details><summary>Changes</summary>'
echo
echo "${fence}diff"
printf '%s\n' "$text"
echo "$fence"
echo '</details>'
