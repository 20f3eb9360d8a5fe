/* SPDX-License-Identifier: GPL-2.0 */
/* File rules under BPF LSM, in parts:
 *   file_rules.h  - rule keys (the kernel's identity of an inode), the rule
 *                   maps, the ancestor walk to the nearest rule, the verdict
 *                   and its event
 *   file_open.h   - open (r, w), exec and executable mappings (x)
 *   file_change.h - changes without open (w): link, rename, unlink, rmdir,
 *                   create, mkdir, mknod, symlink, setattr, xattrs, ACLs
 *   file_unix.h   - reaching Unix-domain sockets (w on a named socket)
 *   file_ident.h  - the identify iterator and the BPF LSM probe */
#pragma once

#include "file_rules.h"
#include "file_open.h"
#include "file_change.h"
#include "file_unix.h"
#include "file_ident.h"
