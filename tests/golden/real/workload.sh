#!/bin/bash
# A small real workload: buffered writes, fsync (writeback), O_DIRECT read, truncate, fork.
set -e
f=/work/capture/data.bin
dd if=/dev/urandom of=$f bs=4096 count=8 status=none
sync $f
dd if=$f of=/dev/null bs=4096 count=8 iflag=direct status=none
dd if=/dev/zero of=$f bs=4096 count=2 seek=2 conv=notrunc status=none
sync $f
truncate -s 8192 $f
( true ) &
wait
rm -f $f
