# One image with every Palisade binary: palisade (CLI), palisade-webhook, palisade-operator,
# palisade-enforcer, and palisade-cni (the CNI plugin the enforcer installs on its node). The
# chart runs each component from it. Without Docker, ./e2e/image.sh builds
# the same contents (bookworm, iptables, ipset, conntrack, ca-certificates, the stripped binaries,
# user 65532).
#   docker build -t ghcr.io/palisade-dev/palisade:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p palisade-cli -p palisade-webhook -p palisade-operator -p palisade-enforcer -p palisade-cni \
 && mkdir /out \
 && cp target/release/palisade target/release/palisade-webhook \
       target/release/palisade-operator target/release/palisade-enforcer \
       target/release/palisade-cni /out/ \
 && strip /out/*

# The enforcer drives the node's iptables, ipset and conntrack tools (conntrack cuts the live
# connections a tightened policy denies), so the runtime is a slim Debian with those packages
# rather than a scratch image. Pick the iptables backend the node's
# kube-proxy uses (nft by default on current distributions; update-alternatives otherwise).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset conntrack ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# Non-root by default; the enforcer's DaemonSet runs it as root with NET_ADMIN and NET_RAW only.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/palisade"]
