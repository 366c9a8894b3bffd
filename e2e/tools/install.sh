#!/usr/bin/env bash
# Installs the upstream tools the end-to-end tests use, at pinned versions, into a cache that
# survives fresh clones (CI clones anew each run). Idempotent: a tool already built at the pinned
# version is reused. Go is used only here, to build upstream Kubernetes tools from their modules.
#
#   e2e/tools/install.sh            # everything
#   e2e/tools/install.sh --print    # print the bin directory and exit
set -euo pipefail

K8S_VERSION=v1.34.4          # kube-apiserver, kubectl, and the real-node tier's kubelet,
                             # kube-controller-manager, kube-scheduler, kube-proxy
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.19.5
DEBIAN_PACKAGES=(iptables ipset iproute2 conntrack iperf3 procps kmod openssl)
# The real-node tier (containerd + runc + CNI nodes, the image built without Docker). Installed
# when the mirror has them; without them only that tier is skipped, and it says which is missing.
# (nftables: the `nft` tool kube-proxy runs in nftables mode, on node-2.)
REAL_NODE_PACKAGES=(containerd runc containernetworking-plugins umoci skopeo mmdebstrap busybox-static gcc libc6-dev util-linux nftables
  bash-static)  # bash-static: the agnhost image's /bin/bash (network-policy-api's manifests run it)

CACHE=${PALISADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade}
BIN=$CACHE/bin
if [[ ${1:-} == --print ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$CACHE/build"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- Debian packages -----------------------------------------------------------------------------
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
optional=()
for p in "${REAL_NODE_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || optional+=("$p")
done
if ((${#optional[@]})) && command -v apt-get >/dev/null; then
  log "installing the real-node tier's Debian packages: ${optional[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # containerd's package starts its service; the tier runs its own per node, so keep it stopped.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy_rc=1
  fi
  { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null; } \
    || log "warning: could not install ${optional[*]}: the real-node tier will be skipped"
  [[ -n ${added_policy_rc:-} ]] && rm -f /usr/sbin/policy-rc.d
fi

# ---- Go-built tools ------------------------------------------------------------------------------
have_version() { [[ -x $BIN/$1 && -f $BIN/.$1.version && $(cat "$BIN/.$1.version") == "$2" ]]; }

need_go() {
  command -v go >/dev/null || die "the Go toolchain is needed to build $1 (install Go >= 1.24, or put it on PATH)"
}

# go_build NAME VERSION MODULE_DIR PACKAGE [LDFLAGS]
go_build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
  log "building $name $version (first build takes minutes; cached afterwards)"
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$pkg") \
    || die "go build of $name failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$version" >"$BIN/.$name.version"
  log "built $name in $((SECONDS - start))s"
}

# Kubernetes: k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths, so
# `go install` refuses it. A tools module requires it and points each staging module at its
# published v0.Y.Z twin instead.
k8s_module() {
  local dir=$CACHE/build/kubernetes-tools-$K8S_VERSION  # named for the six commands in tools.go
  if [[ ! -f $dir/go.sum ]]; then
    need_go kubernetes
    log "resolving k8s.io/kubernetes $K8S_VERSION modules"
    mkdir -p "$dir"
    local staging=v0.${K8S_VERSION#v1.}
    local gomod
    gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    [[ -f $gomod ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
    {
      echo "module palisade.dev/e2e-tools"
      echo
      echo "go 1.24.0"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
      echo ")"
    } >"$dir/go.mod"
    cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    (cd "$dir" && go mod tidy >/dev/null 2>&1 || go get k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) \
      || die "resolving the kubernetes tools module failed"
  fi
  echo "$dir"
}

k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local x
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$x"
}

K8S_TOOLS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kube-proxy kubelet)
for tool in "${K8S_TOOLS[@]}"; do
  have_version "$tool" "$K8S_VERSION" && continue
  dir=$(k8s_module)
  go_build "$tool" "$K8S_VERSION" "$dir" "k8s.io/kubernetes/cmd/$tool" "$(k8s_ldflags)"
done

simple_module() { # simple_module NAME PACKAGE VERSION -> dir (go get of the package pulls its deps)
  local dir=$CACHE/build/$1-$3
  if [[ ! -f $dir/go.sum ]]; then
    need_go "$1"
    mkdir -p "$dir"
    printf 'module palisade.dev/e2e-tools/%s\n\ngo 1.24.0\n' "$1" >"$dir/go.mod"
    (cd "$dir" && go get "$2@$3" >/dev/null 2>&1) || die "go get $2@$3 failed (is the Go module proxy reachable?)"
  fi
  echo "$dir"
}

if ! have_version etcd "$ETCD_VERSION"; then
  dir=$(simple_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
  go_build etcd "$ETCD_VERSION" "$dir" go.etcd.io/etcd/server/v3
fi

if ! have_version helm "$HELM_VERSION"; then
  dir=$(simple_module helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")
  go_build helm "$HELM_VERSION" "$dir" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
fi

# ---- images the real-node tier runs besides Palisade's own -------------------------------------------
# A static pause (the pod sandbox) and Debian's busybox-static (nc, httpd, sh for test workloads):
# nothing is pulled from a registry. docker-archive tars, imported into each node's containerd.
IMAGES=$CACHE/images
TEST_IMAGES_VERSION=1
build_test_images() {
  local work
  work=$(mktemp -d)
  mkdir -p "$IMAGES"
  cat >"$work/pause.c" <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0};
  a.sa_handler = stop;
  sigaction(SIGINT, &a, 0);
  sigaction(SIGTERM, &a, 0);
  a.sa_handler = reap;
  a.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &a, 0);
  for (;;) pause();
}
C
  mkdir -p "$work/pause/bin" "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
  gcc -static -Os -s -o "$work/pause/bin/pause" "$work/pause.c" || return 1
  cp /bin/busybox "$work/busybox/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ -e $work/busybox/bin/$applet ]] || ln -s busybox "$work/busybox/bin/$applet"
  done
  chmod 1777 "$work/busybox/tmp"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$work/busybox/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/busybox/etc/group"
  local name entry
  for name in pause busybox; do
    entry=/bin/$name; [[ $name == busybox ]] && entry=/bin/sh
    umoci init --layout "$work/oci-$name" &&
      umoci new --image "$work/oci-$name:$name" &&
      umoci unpack --image "$work/oci-$name:$name" "$work/bundle-$name" >/dev/null &&
      cp -a "$work/$name/." "$work/bundle-$name/rootfs/" &&
      umoci repack --image "$work/oci-$name:$name" "$work/bundle-$name" &&
      umoci config --image "$work/oci-$name:$name" --os linux --architecture amd64 --config.entrypoint "$entry" &&
      skopeo copy --quiet "oci:$work/oci-$name:$name" "docker-archive:$IMAGES/$name.tar.tmp:palisade.test/$name:$TEST_IMAGES_VERSION" &&
      mv "$IMAGES/$name.tar.tmp" "$IMAGES/$name.tar" || return 1
  done
  echo "$TEST_IMAGES_VERSION" >"$IMAGES/.version"
  rm -rf "$work"
}
if [[ ! -f $IMAGES/.version || $(cat "$IMAGES/.version") != "$TEST_IMAGES_VERSION" ]]; then
  if command -v umoci >/dev/null && command -v skopeo >/dev/null && command -v gcc >/dev/null && [[ -x /bin/busybox ]]; then
    log "building the test images (pause, busybox) into $IMAGES"
    build_test_images || log "warning: building the test images failed: the real-node tier will be skipped"
  fi
fi

# ---- the upstream conformance suites (e2e/tests/upstream_suites.rs) ------------------------------------
# Kubernetes' e2e.test, network-policy-api's conformance suite and the agnhost image they run.
"$(dirname "$0")/upstream.sh" "$CACHE" "$K8S_VERSION"

log "tools ready in $BIN: ${K8S_TOOLS[*]} $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION"
echo "$BIN"
