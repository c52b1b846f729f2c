#!/usr/bin/env bash
# Which commit a deploy job deploys, so that the newest commit on the branch
# always ends up deployed, and an older one never over a newer one.
#
#   hack/deploy-target.sh github     in .github/workflows/deploy.yml
#   hack/deploy-target.sh gitlab     in .gitlab-ci.yml's deploy job
#
# print, on stdout, `sha=<commit>` (empty: deploy nothing) and
# `reason=<one line>`, for $GITHUB_OUTPUT or a shell.
#
# A deploy job starts after its own commit's tests passed, but not in the
# order of the commits: GitHub keeps one pending job per concurrency group
# and cancels the one already waiting, so the newest commit's job may never
# run; and a commit with [skip ci] has no pipeline at all. So the job does
# not simply deploy its own commit, or exit when the branch moved on:
#
#   1. deployable are its own commit and (GitHub) every newer commit on the
#      branch whose hermetic gate passed: a successful check run named
#      $GATE, made by the GitHub Actions app (id 15368, slug
#      github-actions), in the check suite of a push run of the workflow
#      $GATE_WORKFLOW on that commit. Any app with checks: write can create
#      a check run of any name, and a pull request's run of the same job
#      ran other code (its merge commit) under the same name;
#   2. it deploys the newest deployable commit, or above it the newest of
#      the [skip ci] commits directly on top of it (they will get no pipeline
#      of their own; their author chose to skip the tests);
#   3. a branch that no longer contains its commit (rewritten) deploys
#      nothing: the new history's pipelines deploy it.
#
# GitLab never cancels a job waiting for a resource group, and processes
# them newest first: a newer commit with a pipeline deploys after this one.
# Its deploy job then needs only steps 2 and 3 (reading test results would
# need an API token).
#
#   hack/deploy-target.sh covered <deployed> <target>
#
# exits 0 when <target> is <deployed> or an ancestor of it (a newer commit is
# already deployed: `pulumi up` of <target> would go back), 1 otherwise.
# <deployed> is the git.head of the stack's last successful update.
#
#   pulumi stack history --json | hack/deploy-target.sh deployed
#
# prints that <deployed>: the git.head of the newest entry that changed what
# runs, a successful update (kind "update"; refresh, import, preview and
# rename entries change nothing that runs, and pulumi records git.head for
# them too: an admin's `pulumi refresh` at a newer commit must not make CI
# skip a deploy). Nothing (so the target deploys) when that entry is a
# destroy, an update from a dirty tree (git.dirty "true": its git.head does
# not say what ran), or an update with no git.head (run outside a clone).
# Field names: pulumi's `stack history --json` (kind, result, environment).
#
# GitHub: GITHUB_REPOSITORY, GITHUB_SHA, BRANCH, GATE, GATE_WORKFLOW and
# `gh` (GH_TOKEN, with checks: read and actions: read).
# GitLab: CI_REPOSITORY_URL, CI_COMMIT_SHA, CI_COMMIT_BRANCH and `git`, run
# in the job's clone.
set -euo pipefail

# The markers with which a commit gets no pipeline, GitHub's and GitLab's.
skip_markers='\[(skip ci|ci skip|no ci|skip actions|actions skip)\]'
skip_markers_jq='\\[(skip ci|ci skip|no ci|skip actions|actions skip)\\]' # the same, in a jq string

out() { printf 'sha=%s\nreason=%s\n' "$1" "$2"; }

# pick OWN: reads "<sha> <passed> <skips>" lines, newest first, of the
# commits after OWN up to the tip, and prints the target.
pick() {
  local own=$1 sha passed skips newest_deployable='' run_top=''
  local -a shas=() passes=() skip=()
  while read -r sha passed skips; do
    shas+=("$sha") passes+=("$passed") skip+=("$skips")
  done
  local i
  # 1. the newest deployable commit (own when no newer one passed).
  for ((i = 0; i < ${#shas[@]}; i++)); do
    if [[ ${passes[i]} == true ]]; then
      newest_deployable=$i
      break
    fi
  done
  local base=${newest_deployable:-${#shas[@]}} # index; ${#shas[@]} is own
  # 2. the [skip ci] commits directly above it.
  for ((i = base - 1; i >= 0; i--)); do
    [[ ${skip[i]} == true ]] || break
    run_top=$i
  done
  if [[ -n $run_top && $base == "${#shas[@]}" ]]; then
    out "${shas[run_top]}" "deploying ${shas[run_top]}: the [skip ci] commit(s) on top of this run's $own get no pipeline of their own"
  elif [[ -n $run_top ]]; then
    out "${shas[run_top]}" "deploying ${shas[run_top]}: the [skip ci] commit(s) on top of ${shas[base]}, whose tests passed, get no pipeline of their own"
  elif [[ -n $newest_deployable ]]; then
    out "${shas[base]}" "deploying ${shas[base]}, the newest commit whose tests passed (newer than this run's $own)"
  else
    out "$own" "deploying this run's $own: no newer commit has passed its tests yet (a newer one that does deploys after it)"
  fi
}

# The GitHub Actions app: only its check runs come from a workflow's job.
actions_app_id=15368

# gate_passed SHA: true when a push run of $GATE_WORKFLOW on SHA has a
# successful $GATE job (its check run, in that run's check suite), else false.
gate_passed() {
  local sha=$1 suites runs
  suites=$(gh api --method GET "repos/$GITHUB_REPOSITORY/commits/$sha/check-runs" -f check_name="$GATE" -f app_id="$actions_app_id" \
    --jq "[.check_runs[] | select(.conclusion == \"success\" and .app.id == $actions_app_id and .app.slug == \"github-actions\") | .check_suite.id]")
  runs=$(gh api --method GET "repos/$GITHUB_REPOSITORY/actions/workflows/$GATE_WORKFLOW/runs" -f head_sha="$sha" -f event=push \
    --jq "[.workflow_runs[] | select(.head_sha == \"$sha\" and .event == \"push\" and .path == \".github/workflows/$GATE_WORKFLOW\") | .check_suite_id]")
  jq -n --argjson suites "$suites" --argjson runs "$runs" '[$suites[] | select(. as $s | $runs | index($s))] | length > 0'
}

github() {
  : "${GITHUB_REPOSITORY:?}" "${GITHUB_SHA:?}" "${BRANCH:?}" "${GATE:?}" "${GATE_WORKFLOW:?}"
  local tip status
  tip=$(gh api "repos/$GITHUB_REPOSITORY/commits/$BRANCH" --jq .sha)
  if [[ $tip == "$GITHUB_SHA" ]]; then
    out "$tip" "deploying $tip, the tip of $BRANCH"
    return
  fi
  status=$(gh api "repos/$GITHUB_REPOSITORY/compare/$GITHUB_SHA...$tip" --jq .status)
  if [[ $status != ahead ]]; then
    out "" "not deploying $GITHUB_SHA: $BRANCH is at $tip, which does not contain it ($status); the new history's runs deploy"
    return
  fi
  gh api "repos/$GITHUB_REPOSITORY/compare/$GITHUB_SHA...$tip" \
    --jq ".commits | reverse | .[] | \"\(.sha) \(.commit.message | test(\"$skip_markers_jq\"; \"i\"))\"" |
    while read -r sha skips; do
      echo "$sha $(gate_passed "$sha") $skips"
    done | pick "$GITHUB_SHA"
}

gitlab() {
  : "${CI_REPOSITORY_URL:?}" "${CI_COMMIT_SHA:?}" "${CI_COMMIT_BRANCH:?}"
  local tip
  git fetch --quiet "$CI_REPOSITORY_URL" "refs/heads/$CI_COMMIT_BRANCH"
  tip=$(git rev-parse FETCH_HEAD)
  if [[ $tip == "$CI_COMMIT_SHA" ]]; then
    out "$tip" "deploying $tip, the tip of $CI_COMMIT_BRANCH"
    return
  fi
  if ! git merge-base --is-ancestor "$CI_COMMIT_SHA" "$tip"; then
    out "" "not deploying $CI_COMMIT_SHA: $CI_COMMIT_BRANCH is at $tip, which does not contain it; the new history's pipelines deploy"
    return
  fi
  local sha skips
  git rev-list "$CI_COMMIT_SHA..$tip" |
    while read -r sha; do
      skips=false
      if git log -1 --format=%B "$sha" | grep -qiE "$skip_markers"; then
        skips=true
      fi
      echo "$sha false $skips"
    done | pick "$CI_COMMIT_SHA"
}

covered() {
  local deployed=$1 target=$2
  [[ -n $deployed ]] || return 1
  [[ $deployed == "$target" ]] && return 0
  if [[ ${GITHUB_ACTIONS:-} == true ]]; then
    # behind: target is an ancestor of deployed.
    [[ $(gh api "repos/$GITHUB_REPOSITORY/compare/$deployed...$target" --jq .status) == behind ]]
  else
    git cat-file -e "$deployed^{commit}" 2>/dev/null || git fetch --quiet "$CI_REPOSITORY_URL" "refs/heads/$CI_COMMIT_BRANCH"
    git merge-base --is-ancestor "$target" "$deployed" 2>/dev/null
  fi
}

deployed() {
  jq -r '
    first(.[] | select(.result == "succeeded" and (.kind == "update" or .kind == "destroy"))) // {kind: "none"}
    | if .kind == "none" then "none"
      elif .kind == "destroy" then "destroy"
      elif (.environment["git.dirty"] // "false") == "true" then "dirty \(.environment["git.head"] // "")"
      elif (.environment["git.head"] // "") == "" then "nohead"
      else "head \(.environment["git.head"])" end' | {
    read -r what head
    case $what in
    head) echo "$head" ;;
    none) echo "deploy-target: the stack's history has no successful update: nothing is deployed yet" >&2 ;;
    destroy) echo "deploy-target: the stack's last successful change was a destroy: nothing is deployed" >&2 ;;
    dirty) echo "deploy-target: the stack's last successful update ran from a dirty tree at $head: what runs is not that commit" >&2 ;;
    nohead) echo "deploy-target: the stack's last successful update records no git.head: what runs is unknown" >&2 ;;
    esac
  }
}

case "${1:-}" in
github) github ;;
gitlab) gitlab ;;
deployed) deployed ;;
covered) covered "${2:?usage: hack/deploy-target.sh covered <deployed> <target>}" "${3:?usage: hack/deploy-target.sh covered <deployed> <target>}" ;;
*)
  echo "usage: hack/deploy-target.sh github|gitlab|deployed|covered <deployed> <target>" >&2
  exit 2
  ;;
esac
