#!/usr/bin/env bash
# Fetch the reference Apache Kafka jars (broker + tools) into <repo>/.cache/kafka/libs.
# Idempotent: skipped when the stamp for the pom's Kafka version is present.
# Works from any cwd.  Use afterwards:  java -cp "<repo>/.cache/kafka/libs/*" kafka.Kafka ...
# Env: KAFKA_FETCH_FORCE=1 re-fetches; MAVEN_REPO_LOCAL overrides the Maven cache
#      (default <repo>/.cache/kafka/m2, so nothing lands outside .cache/).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pom="$here/pom.xml"
libs="$root/.cache/kafka/libs"
m2="${MAVEN_REPO_LOCAL:-$root/.cache/kafka/m2}"

version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
[ -n "$version" ] || { echo "fetch.sh: no <kafka.version> in $pom" >&2; exit 1; }
# the stamp also covers the rest of the pom, so changing any dependency re-fetches
pomsum="$(cksum < "$pom" | cut -d' ' -f1)"
stamp="$libs/.stamp-kafka-$version-$pomsum"

if [ -z "${KAFKA_FETCH_FORCE:-}" ] && [ -f "$stamp" ] && ls "$libs"/kafka_2.13-"$version".jar >/dev/null 2>&1; then
  echo "kafka $version: already fetched, $(ls "$libs"/*.jar | wc -l) jars in ${libs#"$root"/}"
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
rm -rf "$libs"
mkdir -p "$libs"
if ! out="$(mvn -q -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$m2" \
    dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime 2>&1)"; then
  echo "$out" >&2
  rm -rf "$libs"  # no partial set of jars: tests that need them then skip instead of failing
  echo "fetch.sh: mvn dependency:copy-dependencies failed" >&2
  exit 1
fi
touch "$stamp"
echo "kafka $version: fetched $(ls "$libs"/*.jar | wc -l) jars into ${libs#"$root"/}"
