#!/usr/bin/env bash
# Create plugins/NAME from this template: a crate `mailhost-NAME` built to
# mailhost_NAME.wasm, added to the workspace, with the template's
# transcripts as its first tests. Usage: new-plugin.sh NAME [WORKSPACE]
set -euo pipefail

name=${1:-}
root=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
template="$root/plugins/template"

if [[ ! $name =~ ^[a-z][a-z0-9-]{0,30}[a-z0-9]$ ]]; then
    echo "error: NAME must be 2 to 32 of a-z, 0-9 and -, starting with a" \
        "letter and not ending in -; got '$name'" >&2
    exit 2
fi
dest="$root/plugins/$name"
if [ -e "$dest" ]; then
    echo "error: $dest already exists" >&2
    exit 2
fi
members="$root/Cargo.toml"
if ! grep -q '^    "plugins/sdk",$' "$members"; then
    echo "error: $members has no '    \"plugins/sdk\",' member line" \
        "to add the new crate after" >&2
    exit 2
fi

mkdir -p "$dest"
cp -r "$template/Cargo.toml" "$template/src" "$template/transcripts" "$dest/"
crate=${name//-/_}
sed -i -e "s/mailhost-template/mailhost-$name/g" \
    -e "s/mailhost_template/mailhost_$crate/g" \
    -e "s/template ready/$name ready/g" \
    -e "s/hello from the template/hello from $name/g" \
    -e "s/just test-plugin template/just test-plugin $name/g" \
    -e "s/^struct Template;/struct Plugin;/" \
    -e "s/impl Guest for Template/impl Guest for Plugin/" \
    -e "s/export!(Template)/export!(Plugin)/" \
    "$dest/Cargo.toml" "$dest/src/lib.rs" "$dest"/transcripts/*.txt
sed -i "s|^    \"plugins/sdk\",\$|&\n    \"plugins/$name\",|" "$members"

echo "created $dest (crate mailhost-$name)"
echo "next: just test-plugin $name"
