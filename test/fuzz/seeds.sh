#!/usr/bin/env bash
# seeds.sh: (re)write the committed seed corpora test/fuzz/corpus/{fuzz_ops,fuzz_open}. Run from the
# repository root after `make tools` (the raw-segment seeds are real segments made by build/kvtool).
# The input formats are described at the top of fuzz_ops.c and fuzz_open.c; each seed below is hex,
# spaces only for reading.
set -euo pipefail
cd "$(dirname "$0")/../.."
ops=test/fuzz/corpus/fuzz_ops open=test/fuzz/corpus/fuzz_open
kvtool=${KVTOOL:-build/kvtool}
rm -rf "$ops" "$open"
mkdir -p "$ops" "$open"

seed() { # FILE HEX...
  local file=$1
  shift
  echo "$*" | tr -d ' ' | xxd -r -p >"$file"
}

hex() { printf '%s' "$1" | xxd -p | tr -d '\n'; } # ASCII -> hex

# ---- fuzz_ops: geometry (4 bytes: the last 00, no memory_bytes; odd, a heap), then ops ----------------------------------------------------
# max 4, key 8, value 16: set ab=hello, get, set_if at its revision, delete_if with a wrong revision,
# delete, get (not found), kv_check.
seed "$ops/basic" 03 07 0f 00 \
  00 02 "$(hex ab)" 05 "$(hex hello)" 02 80 00 04 80 02 "$(hex hi)" 02 05 80 17 03 80 02 80 00 07
# max 1: a second key is refused (KV_EFULL) until the first is deleted.
seed "$ops/full" 00 03 03 00 00 01 "$(hex a)" 01 "$(hex x)" 00 01 "$(hex b)" 01 "$(hex y)" \
  03 01 "$(hex a)" 00 01 "$(hex b)" 01 "$(hex y)" 02 81 00 07
# key_max 4, value_max 4: empty key, NUL in a key, a 6-byte key, a 6-byte value, a NULL empty value,
# a NULL value with a length, gets with no buffer, a 1-byte buffer and a NULL buffer of length 1.
seed "$ops/bad_args" 03 03 03 00 00 00 01 "$(hex v)" 00 02 6100 01 "$(hex v)" \
  00 06 "$(hex abcdef)" 01 "$(hex v)" 00 01 "$(hex k)" 06 "$(hex 123456)" \
  10 01 "$(hex k)" 00 30 01 "$(hex j)" 02 "$(hex zz)" 00 01 "$(hex k)" 03 "$(hex abc)" \
  02 80 02 02 80 05 02 80 03 0a 80 00 07
# Conditional writes: create-only twice (the second conflicts), unconditional, delete_if at the
# current revision, delete_if of a missing key, with and without the out-pointer.
seed "$ops/conditional" 07 07 07 00 04 02 "$(hex cd)" 01 "$(hex 1)" 00 04 80 01 "$(hex 2)" 00 \
  04 80 01 "$(hex 3)" 01 05 80 02 0d 80 02 05 80 01 07
# max 16, key_max 2, value_max 1: sixteen one-byte keys share an index of 32 cells (probe runs,
# backward-shift deletion), then deletes and gets.
ops16=""
for c in a b c d e f g h i j k l m n o p; do ops16+="00 01 $(hex $c) 01 $(hex $c) "; done
seed "$ops/probe_runs" 0f 01 00 00 $ops16 03 01 "$(hex c)" 03 01 "$(hex d)" 02 01 "$(hex e)" 00 \
  02 01 "$(hex p)" 00 00 01 "$(hex q)" 01 "$(hex q)" 03 01 "$(hex a)" 07

# The change ring: three writes, then kv_change of the last two, one not written yet, revision 0, with
# small buffers, with no buffers, and with a NULL key buffer of length 1.
seed "$ops/ring" 03 07 0f 00 00 01 "$(hex a)" 01 "$(hex 1)" 00 01 "$(hex b)" 01 "$(hex 2)" 03 81 \
  06 00 00 06 04 00 06 01 00 06 02 00 06 00 05 06 00 02 06 00 03 0e 00 00
# 300 writes of one key, then the oldest change the ring keeps (256 back) and the first it does not.
ring300=""
for _ in $(seq 300); do ring300+="00 01 $(hex a) 00 "; done
seed "$ops/ring_wrap" 00 00 00 00 $ring300 06 17 00 06 1b 00 06 03 00
# A heap of 4096 + 16 * 20 bytes, values up to 250 bytes (0xf9 % 250 + 1): sets of 200-byte values
# until KV_EFULL, deletes of every other key, then a 240-byte value that needs a compaction.
heap=""
for c in a b c d e f g h i j k l m n o p q r s t u; do heap+="00 01 $(hex $c) c8 $(printf 'x%.0s' $(seq 200) | xxd -p | tr -d '\n') "; done
for c in a c e g i k m o q s u; do heap+="03 01 $(hex $c) "; done
seed "$ops/heap_compaction" 3f 07 f9 29 $heap 00 01 "$(hex z)" f0 "$(printf 'z%.0s' $(seq 240) | xxd -p | tr -d '\n')" 07

# Eviction (key_max byte with its top bit: 0x87 is key_max 8 and KV_EVICT_LRU). Four slots: six
# keys evict two, a read makes "a" recent, two more keys, a set with a ttl (opcode 0x40), kv_check.
seed "$ops/lru_slots" 03 87 0f 00 00 01 "$(hex a)" 01 "$(hex 1)" 00 01 "$(hex b)" 01 "$(hex 2)" \
  00 01 "$(hex c)" 01 "$(hex 3)" 00 01 "$(hex d)" 01 "$(hex 4)" 00 01 "$(hex e)" 01 "$(hex 5)" \
  02 01 "$(hex c)" 00 00 01 "$(hex f)" 01 "$(hex 6)" 40 01 "$(hex g)" 01 "$(hex 7)" 07
# The heap of heap_compaction, evicting: 21 values of 200 bytes, then each rewritten with 240 bytes
# (an update that needs room may not evict its own entry), every other one with a ttl.
lru=""
for c in a b c d e f g h i j k l m n o p q r s t u; do lru+="00 01 $(hex $c) c8 $(printf 'x%.0s' $(seq 200) | xxd -p | tr -d '\n') "; done
for c in a b c d e f g h i j k l m n o p q r s t u; do lru+="$([ "$c" \< k ] && echo 40 || echo 00) 01 $(hex $c) f0 $(printf 'y%.0s' $(seq 240) | xxd -p | tr -d '\n') "; done
seed "$ops/lru_heap" 3f 87 f9 29 $lru 07

# Expiry in the middle of a sequence. Opcode c0: a set with a ttl of 10 s x (1 + value length % 3);
# 2f / 4f: the clock moves 20 s / 30 s on; 3f: kv_expire over 10 slots. "a" (20 s) expires, "c"
# (30 s) not yet; the sweep reclaims "a"; then "c" expires and its set reclaims it first; a delete
# of an expired key, kv_check.
seed "$ops/expiry_mid" 03 07 0f 00 c0 01 "$(hex a)" 01 "$(hex 1)" 00 01 "$(hex b)" 01 "$(hex 2)" \
  c0 01 "$(hex c)" 02 "$(hex 12)" 02 01 "$(hex a)" 00 2f 02 01 "$(hex a)" 00 02 01 "$(hex c)" 00 3f \
  2f 00 01 "$(hex c)" 01 "$(hex 3)" c0 01 "$(hex d)" 01 "$(hex 4)" 4f 03 01 "$(hex d)" 07
# Two slots, both holding entries that have expired: new keys take their place (a full store reclaims
# expired entries before it refuses); then the same in a store that evicts (0x87).
full_expired="c0 01 $(hex a) 01 $(hex 1) c0 01 $(hex b) 01 $(hex 2) 4f 00 01 $(hex c) 01 $(hex 3) 00 01 $(hex d) 01 $(hex 4) 07"
seed "$ops/expiry_full" 01 07 0f 00 $full_expired
seed "$ops/expiry_lru" 01 87 0f 00 $full_expired

# ---- fuzz_open: mode byte, then a raw segment or a recipe --------------------------------------
name=/shmkv-fuzz-seed-$$
trap '"$kvtool" "$name" unlink >/dev/null 2>&1 || rm -f "/dev/shm${name}"' EXIT
"$kvtool" "$name" create 4 8 16
"$kvtool" "$name" set one 1
"$kvtool" "$name" set two 22
"$kvtool" "$name" set three 333
"$kvtool" "$name" del two
segment=$(xxd -p "/dev/shm${name}" | tr -d '\n')
seed "$open/raw_valid" 01 "$segment"         # a real segment as kvtool left it
seed "$open/raw_dead_owner" 03 "$segment"    # same, its lock held by a thread that died
# Recipes: geometry, keys to set, mask of keys to delete again, [resize byte], patches.
seed "$open/sound" 00 03 07 0f 00 03 01
seed "$open/sound_large" 00 3f 0f 3f 00 20 55
# Undo record armed (state 1 at 192, slot 1 at 196) and the lock's owner dead: recovery replays it.
seed "$open/undo_armed" 02 03 07 0f 00 03 00 c000 01 01000000 c400 01 01000000
seed "$open/truncated" 04 03 07 0f 00 02 00 f8
seed "$open/entry_count" 00 00 03 03 00 01 00 3c00 01 05000000
# A store with a heap (memory_bytes 4096 + 16 * 8), then a used chunk's head patched (offset 0 into
# the heap: its size) and a free chunk's link pointed at itself, the lock's owner dead: recovery
# rebuilds the heap from the entries.
seed "$open/heap_damaged" 02 07 07 3f 11 06 05 0000 03 ffff0000 4000 03 41000000
seed "$open/odd_seq" 00 03 07 0f 00 02 00 3800 01 03000000
# kv_resize (bit 3) to the geometry of the last four bytes (too short to be a patch): 64, 16, 64; to
# 2, 16, 64: more entries than fit; and a store with a heap to 64, 16, 64 with memory_bytes 4096.
seed "$open/resize_grow" 08 03 07 0f 00 03 01 3f 0f 3f 00
seed "$open/resize_too_small" 08 03 07 0f 00 03 00 01 0f 3f 00
seed "$open/resize_memory" 08 07 07 3f 11 06 05 3f 0f 3f 01

ls -l "$ops" "$open"
