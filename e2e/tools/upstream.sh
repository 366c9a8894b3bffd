#!/usr/bin/env bash
# Builds the upstream conformance suites the real-node tier runs (e2e/tests/upstream_suites.rs),
# at pinned versions, from the Go module proxy, into the tools cache. Called by install.sh;
# idempotent: what is already built at the pinned version is reused, so a second run is instant.
#
#   $BIN/e2e.test                         Kubernetes' e2e suite (k8s.io/kubernetes/test/e2e)
#   $BIN/ginkgo                           the ginkgo CLI at the version e2e.test is built with, to
#                                         run its specs in parallel processes
#   $BIN/network-policy-api-conformance   sigs.k8s.io/network-policy-api's conformance suite
#   $IMAGES/agnhost.tar                   agnhost (static) as the suites name it, no registry
#
# Usage: e2e/tools/upstream.sh CACHE_DIR K8S_VERSION
set -euo pipefail

CACHE=$1
K8S_VERSION=$2
NETPOL_API_VERSION=v0.3.0
# The agnhost tag k8s.io/kubernetes $K8S_VERSION's test/utils/image/manifest.go names (checked
# below against the module's own manifest), and the one network-policy-api's conformance
# manifests name (conformance/base/manifests.yaml). Both tags carry the agnhost built from
# $K8S_VERSION: the subcommands those manifests run (serve-hostname, porter, connect) are the same.
AGNHOST_TAG=2.56
AGNHOST_CONFORMANCE_TAG=2.45
# Bumped when the image's contents change.
AGNHOST_IMAGE_VERSION=3

BIN=$CACHE/bin
IMAGES=$CACHE/images
mkdir -p "$BIN" "$IMAGES" "$CACHE/build"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
have_version() { [[ -x $BIN/$1 && -f $BIN/.$1.version && $(cat "$BIN/.$1.version") == "$2" ]]; }
command -v go >/dev/null || { log "no Go toolchain: the upstream suites are not built (their test says so)"; exit 0; }

# One module requiring k8s.io/kubernetes with its staging modules at their published twins (as
# install.sh does for the kube-* commands), importing the two packages built from it.
k8s_e2e_module() {
  local dir=$CACHE/build/kubernetes-e2e-$K8S_VERSION
  if [[ ! -f $dir/go.sum || ! -f $dir/tools.go ]]; then
    local tools=$CACHE/build/kubernetes-tools-$K8S_VERSION
    [[ -f $tools/go.mod ]] || die "$tools/go.mod is missing (install.sh makes it first)"
    mkdir -p "$dir"
    sed 's#^module .*#module palisade.dev/e2e-upstream#' "$tools/go.mod" >"$dir/go.mod"
    cp "$tools/go.sum" "$dir/go.sum"
    cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/e2e"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
GO
    (cd "$dir" && go mod tidy >/dev/null 2>&1) || die "resolving k8s.io/kubernetes/test/e2e $K8S_VERSION failed (is the Go module proxy reachable?)"
  fi
  echo "$dir"
}

timed() { # timed NAME COMMAND... : runs it, logs how long it took
  local name=$1 start=$SECONDS
  shift
  log "building $name (first build takes minutes; cached afterwards)"
  "$@" || die "building $name failed"
  log "built $name in $((SECONDS - start))s"
}

if ! have_version e2e.test "$K8S_VERSION"; then
  dir=$(k8s_e2e_module)
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  timed "e2e.test $K8S_VERSION" bash -c "cd '$dir' && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go test -c -trimpath -ldflags '$ldflags' -o '$BIN/e2e.test.tmp' k8s.io/kubernetes/test/e2e"
  mv "$BIN/e2e.test.tmp" "$BIN/e2e.test"
  echo "$K8S_VERSION" >"$BIN/.e2e.test.version"
fi

if ! have_version ginkgo "$K8S_VERSION"; then
  dir=$(k8s_e2e_module)
  timed "ginkgo (of k8s.io/kubernetes $K8S_VERSION)" bash -c "cd '$dir' && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags '-s -w' -o '$BIN/ginkgo.tmp' github.com/onsi/ginkgo/v2/ginkgo"
  mv "$BIN/ginkgo.tmp" "$BIN/ginkgo"
  echo "$K8S_VERSION" >"$BIN/.ginkgo.version"
fi

# The conformance binary, with one change: v0.3.0's suite has a skip list (`suite.Options.SkipTests`:
# the report records those tests as SKIPPED) but no flag to set it, and `go test -test.skip`
# makes the report record a filtered-out test as succeeded. So it is built from a copy of the
# module whose profile test reads the skip list from $NETPOL_API_SKIP_TESTS (comma-separated short
# names); without the variable nothing changes. e2e/tests/upstream_suites.rs sets it to the tests
# that probe SCTP, which this machine's kernel lacks (docs/conformance.md).
CONFORMANCE_BUILD=$NETPOL_API_VERSION-skiplist-1
if ! have_version network-policy-api-conformance "$CONFORMANCE_BUILD"; then
  dir=$CACHE/build/network-policy-api-$NETPOL_API_VERSION
  if [[ ! -f $dir/go.sum ]]; then
    mkdir -p "$dir"
    printf 'module palisade.dev/e2e-tools/network-policy-api\n\ngo 1.24.0\n' >"$dir/go.mod"
    (cd "$dir" && go get "sigs.k8s.io/network-policy-api@$NETPOL_API_VERSION" >/dev/null 2>&1 &&
      go get -t sigs.k8s.io/network-policy-api/conformance >/dev/null 2>&1) ||
      die "go get sigs.k8s.io/network-policy-api@$NETPOL_API_VERSION failed (is the Go module proxy reachable?)"
  fi
  src=$CACHE/build/network-policy-api-$NETPOL_API_VERSION-src
  rm -rf "$src"
  cp -r "$(cd "$dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)" "$src"
  chmod -R u+w "$src"
  profile=$src/conformance/conformance_profile_test.go
  grep -q '				EnableAllSupportedFeatures: \*flags.EnableAllSupportedFeatures,' "$profile" ||
    die "$profile no longer builds its suite.Options as this script expects: review this step"
  sed -i 's|^\t\t\t\tEnableAllSupportedFeatures: \*flags.EnableAllSupportedFeatures,|&\n\t\t\t\tSkipTests: strings.FieldsFunc(os.Getenv("NETPOL_API_SKIP_TESTS"), func(r rune) bool { return r == \x27,\x27 }),|' "$profile"
  sed -i 's|^\t"os"$|&\n\t"strings"|' "$profile"
  grep -q 'SkipTests: strings.FieldsFunc' "$profile" || die "patching $profile failed"
  (cd "$dir" && go mod edit -replace "sigs.k8s.io/network-policy-api=$src")
  timed "network-policy-api conformance $NETPOL_API_VERSION" bash -c "cd '$dir' && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go test -c -trimpath -ldflags '-s -w' -o '$BIN/network-policy-api-conformance.tmp' sigs.k8s.io/network-policy-api/conformance"
  mv "$BIN/network-policy-api-conformance.tmp" "$BIN/network-policy-api-conformance"
  echo "$CONFORMANCE_BUILD" >"$BIN/.network-policy-api-conformance.version"
fi

# agnhost: the static binary at /agnhost (entrypoint /agnhost, command pause, as upstream's
# Dockerfile), and a static bash at /bin/bash (network-policy-api's manifests start it through
# `/bin/bash -c`), as a docker-archive with both tags, imported into every node like the other
# test images: nothing is pulled.
#
# One change, where a kernel has no SCTP (this machine's: no sctp in /proc/net/protocols, no
# module): upstream's `agnhost porter` exits when it cannot listen on an SCTP port, so a container
# that serves SCTP beside nothing else crash-loops and network-policy-api's base StatefulSets
# (which have such containers) never become Ready, and no test can run. Built from a vendored copy of
# porter.go in which that listen failure is logged and the container keeps running
# without the SCTP port. With SCTP in the kernel nothing changes; the SCTP tests are skipped here
# either way (docs/conformance.md).
agnhost_image_ok() {
  [[ -f $IMAGES/agnhost.tar && -f $IMAGES/.agnhost.version &&
    $(cat "$IMAGES/.agnhost.version") == "$K8S_VERSION-$AGNHOST_TAG-$AGNHOST_IMAGE_VERSION" ]]
}
build_agnhost_image() {
  local dir work manifest
  dir=$(k8s_e2e_module)
  manifest=$(cd "$dir" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/utils/image/manifest.go
  grep -q "configs\[Agnhost\] = Config{list.PromoterE2eRegistry, \"agnhost\", \"$AGNHOST_TAG\"}" "$manifest" ||
    die "k8s.io/kubernetes $K8S_VERSION does not name agnhost:$AGNHOST_TAG in $manifest: update AGNHOST_TAG"
  [[ -x /bin/bash-static ]] || die "/bin/bash-static is missing (apt-get install bash-static)"
  work=$(mktemp -d)
  mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
  # A module vendoring what agnhost needs, porter.go softened in the vendored copy (the module
  # cache itself stays as downloaded).
  local vdir=$CACHE/build/agnhost-$K8S_VERSION porter
  rm -rf "$vdir" && mkdir -p "$vdir"
  sed 's#^module .*#module palisade.dev/e2e-agnhost#' "$dir/go.mod" >"$vdir/go.mod"
  cp "$dir/go.sum" "$vdir/go.sum"
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/test/images/agnhost"\n' >"$vdir/tools.go"
  (cd "$vdir" && go mod tidy >/dev/null 2>&1 && go mod vendor) || return 1
  porter=$vdir/vendor/k8s.io/kubernetes/test/images/agnhost/porter/porter.go
  grep -q 'log.Fatal("Failed to listen SCTP. error:", err)' "$porter" ||
    die "$porter no longer has the SCTP listen failure this script softens: review this step"
  sed -i 's|log.Fatal("Failed to listen SCTP. error:", err)|log.Printf("not serving SCTP port %s: %v (no SCTP in this kernel?)", port, err); return|' "$porter"
  (cd "$vdir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -mod=vendor -trimpath -ldflags '-s -w' -o "$work/rootfs/agnhost" k8s.io/kubernetes/test/images/agnhost) || return 1
  cp /bin/bash-static "$work/rootfs/bin/bash"
  ln -s bash "$work/rootfs/bin/sh"
  chmod 1777 "$work/rootfs/tmp"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
  umoci init --layout "$work/oci" &&
    umoci new --image "$work/oci:agnhost" &&
    umoci unpack --image "$work/oci:agnhost" "$work/bundle" >/dev/null &&
    cp -a "$work/rootfs/." "$work/bundle/rootfs/" &&
    umoci repack --image "$work/oci:agnhost" "$work/bundle" &&
    umoci config --image "$work/oci:agnhost" --os linux --architecture amd64 --config.entrypoint /agnhost --config.cmd pause &&
    skopeo copy --quiet --additional-tag "registry.k8s.io/e2e-test-images/agnhost:$AGNHOST_CONFORMANCE_TAG" \
      "oci:$work/oci:agnhost" "docker-archive:$IMAGES/agnhost.tar.tmp:registry.k8s.io/e2e-test-images/agnhost:$AGNHOST_TAG" &&
    mv "$IMAGES/agnhost.tar.tmp" "$IMAGES/agnhost.tar" || return 1
  echo "$K8S_VERSION-$AGNHOST_TAG-$AGNHOST_IMAGE_VERSION" >"$IMAGES/.agnhost.version"
  rm -rf "$work"
}
if ! agnhost_image_ok; then
  if command -v umoci >/dev/null && command -v skopeo >/dev/null; then
    timed "the agnhost image ($AGNHOST_TAG, $AGNHOST_CONFORMANCE_TAG)" build_agnhost_image
  else
    log "no umoci or skopeo: the agnhost image is not built (the upstream suites' test says so)"
  fi
fi
