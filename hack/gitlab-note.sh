#!/usr/bin/env bash
# Creates, or updates, the one preview note on a GitLab merge request (the
# comment job of .gitlab-ci.yml; GitHub's is the comment job of
# pull-request.yml). The note's text is <comment.md> (hack/preview-comment.sh
# made it; its first line is the marker the earlier note is found by). When
# the pipeline's test job did not succeed, a warning goes above the preview.
# Only notes of the token's own user are edited.
#
# Usage: hack/gitlab-note.sh <comment.md>
# Environment: GITLAB_PREVIEW_TOKEN (a project access token, role Reporter,
# scope api), and GitLab's CI_API_V4_URL, CI_PROJECT_ID, CI_PIPELINE_ID,
# CI_MERGE_REQUEST_IID, CI_PIPELINE_URL, CI_COMMIT_SHA.
set -euo pipefail

comment=${1:?usage: hack/gitlab-note.sh <comment.md>}
: "${GITLAB_PREVIEW_TOKEN:?}" "${CI_API_V4_URL:?}" "${CI_PROJECT_ID:?}" "${CI_PIPELINE_ID:?}" "${CI_MERGE_REQUEST_IID:?}"
marker='<!-- pulumi-preview: mlops/dev -->'
project="$CI_API_V4_URL/projects/$CI_PROJECT_ID"

# The token goes to curl in a file, never on a command line or in the log.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'PRIVATE-TOKEN: %s\n' "$GITLAB_PREVIEW_TOKEN" > "$tmp/header"
api() { # METHOD URL [curl arguments]
  local method=$1 url=$2
  shift 2
  curl --silent --show-error --fail-with-body --max-time 30 --request "$method" --header "@$tmp/header" "$@" "$url"
}

tests=$(api GET "$project/pipelines/$CI_PIPELINE_ID/jobs?per_page=100" | jq -r '[.[] | select(.name == "test")][0].status // "unknown"')
me=$(api GET "$CI_API_V4_URL/user" | jq -r .username)

# Our earlier note: the first of the token's user that starts with the marker.
id=
for ((page = 1; page <= 20; page++)); do
  notes=$(api GET "$project/merge_requests/$CI_MERGE_REQUEST_IID/notes?sort=asc&order_by=created_at&per_page=100&page=$page")
  id=$(jq -r --arg me "$me" --arg marker "$marker" \
    '[.[] | select(.author.username == $me and (.body | startswith($marker)))][0].id // empty' <<< "$notes")
  [[ -n $id || $(jq length <<< "$notes") -lt 100 ]] && break
done

body="$tmp/body.md"
if [[ $tests == success ]]; then
  cp "$comment" "$body"
else
  {
    head -n1 "$comment"
    echo "> [!caution]"
    echo "> **Tests failed** on commit ${CI_COMMIT_SHA:0:7} ([pipeline](${CI_PIPELINE_URL:-})): the test job is $tests. Fix them before merging: the default branch deploys only commits whose tests pass."
    echo
    tail -n +2 "$comment"
  } > "$body"
fi
jq -n --rawfile body "$body" '{body: $body}' > "$tmp/payload.json"
if [[ -n $id ]]; then
  api PUT "$project/merge_requests/$CI_MERGE_REQUEST_IID/notes/$id" --header 'Content-Type: application/json' --data "@$tmp/payload.json" > /dev/null
  echo "Updated note $id (tests: $tests)"
else
  api POST "$project/merge_requests/$CI_MERGE_REQUEST_IID/notes" --header 'Content-Type: application/json' --data "@$tmp/payload.json" > /dev/null
  echo "Created the preview note (tests: $tests)"
fi
