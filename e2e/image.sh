#!/usr/bin/env bash
# Builds the release image without Docker or a registry: a Debian bookworm base (iptables, ipset,
# conntrack, ca-certificates; cached, keyed by its package list) and the stripped release binaries, as two
# layers, non-root, with the Dockerfile's entrypoint. Writes a docker-archive tar tagged
# ghcr.io/palisade-dev/palisade:<appVersion> (the chart's default image) and prints its path.
#
#   ./e2e/image.sh                 # as root, on Debian or Ubuntu (apt, mmdebstrap, umoci, skopeo)
#   ./e2e/image.sh --out FILE      # write the archive to FILE
#
# Load it with: kind load image-archive FILE | k3d image import FILE |
#   ctr -n k8s.io images import FILE | skopeo copy docker-archive:FILE docker://REGISTRY/palisade:TAG
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
BASE_PACKAGES=iptables,ipset,conntrack,ca-certificates
# Apt's lists and caches, manuals, translations and docs have no use in the image (copyrights stay).
BASE_TRIM='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*; find "$1"/usr/share/doc -type f ! -name copyright -delete'
BINARIES=(palisade palisade-webhook palisade-operator palisade-enforcer palisade-cni)
REPOSITORY=ghcr.io/palisade-dev/palisade
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/palisade/Chart.yaml)
CACHE=${PALISADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade}
OUT=$CACHE/image/palisade-$VERSION.tar
if [[ ${1:-} == --out ]]; then OUT=${2:?--out needs a file}; fi

start=$SECONDS
log() { printf '[image %4ss] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -n $VERSION ]] || die "no appVersion in charts/palisade/Chart.yaml"
[[ $(id -u) == 0 ]] || die "run as root (mmdebstrap and umoci keep file owners only as root)"
missing=()
for tool in mmdebstrap umoci skopeo strip; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  die "missing ${missing[*]}: apt-get install mmdebstrap umoci skopeo binutils"
fi
mkdir -p "$CACHE/image" "$(dirname "$OUT")"

# ---- base: Debian with the enforcer's tools, cached by suite and package list ---------------------
base=$CACHE/image/base-$SUITE-$(dpkg --print-architecture)-$(printf '%s\n%s' "$BASE_PACKAGES" "$BASE_TRIM" | sha256sum | cut -c1-12).tar
if [[ ! -s $base ]]; then
  log "mmdebstrap $SUITE with $BASE_PACKAGES (about a minute; cached afterwards)"
  # Without the merged-usr hook, usrmerge pulls in perl (137 MB instead of 88 MB).
  hook=()
  [[ -d /usr/share/mmdebstrap/hooks/merged-usr ]] && hook=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    "${hook[@]}" \
    --customize-hook="$BASE_TRIM" \
    "$SUITE" "${base%.tar}.partial.tar" || die "mmdebstrap failed (is the Debian mirror in /etc/apt/sources.list reachable?)"
  mv "${base%.tar}.partial.tar" "$base"
fi
log "base $(du -h "$base" | cut -f1) ($base)"

# ---- the binaries ------------------------------------------------------------------------------------
log "cargo build --release (${BINARIES[*]}): minutes on 2 cores the first time, seconds when unchanged"
cargo build --release --locked -p palisade-cli -p palisade-webhook -p palisade-operator -p palisade-enforcer -p palisade-cni --bins \
  || die "cargo build --release failed"
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
log "built"

# ---- assemble: OCI layout with umoci, then a docker-archive with skopeo --------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/palisade-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
oci=$work/oci
umoci init --layout "$oci"
umoci new --image "$oci:palisade"
umoci unpack --image "$oci:palisade" "$work/bundle" >/dev/null
# The runtime mounts /dev, /proc and /sys; the tarball's device nodes have no place in a layer.
tar -xf "$base" -C "$work/bundle/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*'
umoci repack --image "$oci:palisade" "$work/bundle"
log "layer 1: Debian $SUITE base"
rm -rf "$work/bundle"
umoci unpack --image "$oci:palisade" "$work/bundle" >/dev/null
for b in "${BINARIES[@]}"; do
  strip -o "$work/bundle/rootfs/usr/local/bin/$b" "$target/release/$b"
done
umoci repack --image "$oci:palisade" "$work/bundle"
log "layer 2: ${BINARIES[*]} (stripped)"
# As the Dockerfile: non-root by default; the enforcer's DaemonSet runs it as root.
umoci config --image "$oci:palisade" \
  --os linux --architecture "$(dpkg --print-architecture)" \
  --config.entrypoint /usr/local/bin/palisade \
  --config.user 65532:65532 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.source=https://github.com/palisade-dev/palisade"
rm -f "$OUT"
skopeo copy --quiet "oci:$oci:palisade" "docker-archive:$OUT:$REPOSITORY:$VERSION" || die "skopeo copy failed"
log "$REPOSITORY:$VERSION: $(du -h "$OUT" | cut -f1)"
echo "$OUT"
