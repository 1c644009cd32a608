# coredns:dbmigrate — the CoreDNS built by hack/cluster/build-addons.sh, alone in a layer.
# shellcheck shell=bash
build_coredns() {
  local bin hash root
  bin="$("$REPO_ROOT/hack/cluster/build-addons.sh" | tail -1)/coredns"
  hash="$(inputs_hash "$bin" v1)"
  if ! fresh coredns dbmigrate "$hash"; then
    root="$(mktemp -d)"; chmod 755 "$root"
    mkdir -p "$root/etc"
    install -m 755 "$bin" "$root/coredns"
    printf 'root:x:0:0:root:/:/coredns\nnobody:x:65534:65534:nobody:/:/coredns\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    oci_from_rootfs coredns dbmigrate "$hash" "$root" --config.entrypoint /coredns \
      --config.exposedports 53/udp --config.exposedports 53/tcp
    rm -rf "$root"
  fi
  import_image coredns dbmigrate
}
