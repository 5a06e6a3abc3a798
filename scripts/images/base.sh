#!/usr/bin/env bash
# The one base of every image: Debian (minbase + Python 3.11 from Debian) made by mmdebstrap from Debian's
# archive, cached as a tarball and imported into podman. No registry is involved.
#
# Pinning: the release is pinned (bookworm, 12.x point releases and security updates). The package set a build
# got is written next to the tarball and compared with images/base/packages.txt, the committed manifest: a
# difference is printed (BASE_STRICT=1 makes it fatal). For a bit-for-bit pin set DEBIAN_SNAPSHOT (e.g.
# 20261201T000000Z): the archive is then snapshot.debian.org at that instant (not reachable from these machines,
# so it is not the default). BASE_REFRESH=1 rebuilds the tarball and rewrites the manifest.
#
# Usage: scripts/images/base.sh   (prints the image reference on its last line)
set -euo pipefail
cd "$(dirname "$0")/../.."

RELEASE=bookworm
# libpython3.11: PyTriton's Python-backend stub links it. libatomic1: cmeel-mimalloc's libmimalloc.so (the
# allocator Ray preloads in curation) links it; without it Ray's GCS server dies at exec and ray.init times out.
# libquadmath0: torch's bundled libgfortran links it. (Found by ldd over every ELF file in the images.)
PACKAGES=python3,libpython3.11,ca-certificates,libatomic1,libquadmath0
UID_GID=65532                                       # core/builders/pod.py RUN_AS_USER
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1764547200}  # 2025-12-01: fixed, so two builds give the same tarball
export SOURCE_DATE_EPOCH
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}
MANIFEST=images/base/packages.txt

if [[ -n ${DEBIAN_SNAPSHOT:-} ]]; then
  mirror="http://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT"
  security="http://snapshot.debian.org/archive/debian-security/$DEBIAN_SNAPSHOT"
else
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
fi
key=$(printf '%s\n' "$RELEASE" "$PACKAGES" "$UID_GID" "$mirror" "$(sed -n '/^# hooks/,/deb $security/p' "$0")" | sha256sum | cut -c1-12)
dir="$CACHE_ROOT/images/base"
tarball="$dir/debian-$RELEASE-$key.tar"
ref="localhost/reasoning-operator/base:$RELEASE-$key"
mkdir -p "$dir"

# hooks (part of the cache key): merged /usr without the usrmerge package (it pulls perl), the image's only
# user, and no docs, man pages or apt lists.
if [[ ! -s $tarball || ${BASE_REFRESH:-0} == 1 ]]; then
  echo "mmdebstrap $RELEASE minbase + $PACKAGES from $mirror" >&2
  start=$(date +%s)
  mmdebstrap --quiet --variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="echo 'reasoning:x:$UID_GID:$UID_GID:reasoning:/tmp:/usr/sbin/nologin' >> \"\$1/etc/passwd\"" \
    --customize-hook="echo 'reasoning:x:$UID_GID:' >> \"\$1/etc/group\"" \
    --customize-hook='chroot "$1" dpkg-query -W -f "\${Package}=\${Version}\n" > "$1/.packages"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log' \
    "$RELEASE" "$tarball.tmp" \
    "deb $mirror $RELEASE main" "deb $mirror $RELEASE-updates main" "deb $security $RELEASE-security main" \
    || { rm -f "$tarball.tmp"; echo "error: mmdebstrap could not build the base from $mirror (above: the package apt could not fetch)" >&2; exit 4; }
  mv "$tarball.tmp" "$tarball"
  { echo "# base $key: Debian packages of scripts/images/base.sh's last build"; tar -xOf "$tarball" ./.packages | sort; } \
    >"$tarball.packages"
  echo "base tarball: $tarball ($(du -m "$tarball" | cut -f1) MB, $(($(date +%s) - start)) s)" >&2
  # A new key (the package list or hooks changed) or a refresh rewrites the manifest; then commit it.
  if [[ ${BASE_REFRESH:-0} == 1 || ! -s $MANIFEST ]] || ! head -1 "$MANIFEST" | grep -q " $key:"; then
    cp "$tarball.packages" "$MANIFEST"
  fi
fi
if ! diff -u "$MANIFEST" "$tarball.packages" >&2; then
  echo "warning: the base's Debian packages differ from $MANIFEST (a Debian update since it was written;" \
    "BASE_REFRESH=1 rebuilds and rewrites it, DEBIAN_SNAPSHOT pins the archive)" >&2
  [[ ${BASE_STRICT:-0} == 1 ]] && exit 5
fi
if ! podman image exists "$ref"; then
  podman import --quiet --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" --message "debian $RELEASE minbase + $PACKAGES" "$tarball" "$ref" >/dev/null
fi
echo "$ref"
