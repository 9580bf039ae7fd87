// The graph kernels' part of the portable GPU source (appended to portable_kernels.cpp's).
//
// Graphs arrive as CSR arrays of GB_T (row offsets n + 1, neighbours m, weights m) holding whole
// numbers. The kernels keep their integer state (flags, in-edge CSR, BFS levels) as 32-bit
// unsigned integers inside the scratch slot, so that they can use the 32-bit integer atomics
// that are core in OpenCL 1.1+ and CUDA (there are no double atomics in OpenCL 1.2).
//
// Scratch layout, in GB_T elements (gb_graph_* helpers below; graph_recipes.cpp sizes it):
//   flags     4 u32: [0] first bad offset index, [1] first bad neighbour index,
//                    [2] first bad (negative) weight index, [3] "changed" flag
//   in_off    n + 1 u32: in-edge CSR offsets
//   fill      n u32: in-degree counts, then scatter cursors; BFS keeps its levels here
//   in_src    m u32: in-edge CSR sources
//   in_val    m GB_T: in-edge value (SSSP weight, PageRank transition probability)
//   other     n GB_T: the second distance / rank buffer (the output slot is the first)
//   out_w     n GB_T: PageRank out-weight per node
//   state     4 GB_T: [0] dangling mass, [1] converged (PageRank iterations then do nothing)
//   partials  reduce groups GB_T
// Only graphs with n + 1 and m below 2^31 run here (the recipes check).
//
// aux layout (downloaded, read back by the recipes): see graph_recipes.cpp (kAux*).
#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

namespace {

constexpr std::string_view kGraphSource = R"GBSRC(
#ifdef __OPENCL_VERSION__
#  define GB_GRAPH_U32 uint
#  define GB_GRAPH_ATOMIC_ADD(p, v) atomic_add((p), (v))
#  define GB_GRAPH_ATOMIC_MIN(p, v) atomic_min((p), (v))
#  define GB_GRAPH_ATOMIC_OR(p, v) atomic_or((p), (v))
#  define GB_GRAPH_ATOMIC_CAS(p, c, v) atomic_cmpxchg((p), (c), (v))
#  define GB_GRAPH_FLOOR floor
#else
#  define GB_GRAPH_U32 unsigned int
#  define GB_GRAPH_ATOMIC_ADD(p, v) atomicAdd((p), (v))
#  define GB_GRAPH_ATOMIC_MIN(p, v) atomicMin((p), (v))
#  define GB_GRAPH_ATOMIC_OR(p, v) atomicOr((p), (v))
#  define GB_GRAPH_ATOMIC_CAS(p, c, v) atomicCAS((p), (c), (v))
#  if GB_FP64
#    define GB_GRAPH_FLOOR floor
#  else
#    define GB_GRAPH_FLOOR floorf
#  endif
#endif
#define GB_GRAPH_NONE 0xFFFFFFFFu
/* u32 per GB_T element, and GB_T elements holding c u32. */
#define GB_GRAPH_U32_PER_T (sizeof(GB_T) / 4)
#define GB_GRAPH_HALF(c) (((c) + GB_GRAPH_U32_PER_T - 1) / GB_GRAPH_U32_PER_T)

GB_DEVICE GB_SIZE gb_graph_in_off_at(GB_SIZE n) { (void)n; return GB_GRAPH_HALF(4); }
GB_DEVICE GB_SIZE gb_graph_fill_at(GB_SIZE n) { return gb_graph_in_off_at(n) + GB_GRAPH_HALF(n + 1); }
GB_DEVICE GB_SIZE gb_graph_in_src_at(GB_SIZE n) { return gb_graph_fill_at(n) + GB_GRAPH_HALF(n); }
GB_DEVICE GB_SIZE gb_graph_in_val_at(GB_SIZE n, GB_SIZE m) { return gb_graph_in_src_at(n) + GB_GRAPH_HALF(m); }
GB_DEVICE GB_SIZE gb_graph_other_at(GB_SIZE n, GB_SIZE m) { return gb_graph_in_val_at(n, m) + m; }
GB_DEVICE GB_SIZE gb_graph_out_w_at(GB_SIZE n, GB_SIZE m) { return gb_graph_other_at(n, m) + n; }
GB_DEVICE GB_SIZE gb_graph_state_at(GB_SIZE n, GB_SIZE m) { return gb_graph_out_w_at(n, m) + n; }
GB_DEVICE GB_SIZE gb_graph_partials_at(GB_SIZE n, GB_SIZE m) { return gb_graph_state_at(n, m) + 4; }

#define GB_GRAPH_U32_AT(s, at) ((GB_GLOBAL GB_GRAPH_U32*)((s) + (at)))

GB_DEVICE int gb_graph_is_whole(GB_T v, GB_T below) { return v >= (GB_T)0 && v < below && v == GB_GRAPH_FLOOR(v); }

/* flags[0..2] = NONE, flags[3] = 0, and the fill region (n u32) = 0. */
GB_KERNEL void gb_graph_reset(GB_GLOBAL GB_T* s, GB_SIZE n) {
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  GB_GLOBAL GB_GRAPH_U32* fill = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) fill[i] = 0u;
  if (GB_THREAD_ID < 4) flags[GB_THREAD_ID] = GB_THREAD_ID < 3 ? GB_GRAPH_NONE : 0u;
}

/* Validation (flags[0..2] start at GB_GRAPH_NONE): the smallest index of a bad offset (not a
   whole number in [0, m], or below its predecessor; n + 1 when only offsets[0] != 0 or
   offsets[n] != m), of a neighbour that is not a node index, and, when check_weights, of a
   negative weight. */
GB_KERNEL void gb_graph_check(GB_GLOBAL const GB_T* offsets, GB_GLOBAL const GB_T* neighbors,
                              GB_GLOBAL const GB_T* weights, GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE m,
                              GB_SIZE check_weights) {
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  GB_SIZE total = (n + 1 > m) ? n + 1 : m;
  for (GB_SIZE i = GB_THREAD_ID; i < total; i += GB_THREAD_COUNT) {
    if (i <= n) {
      GB_T v = offsets[i];
      if (!(gb_graph_is_whole(v, (GB_T)m + (GB_T)1)) || (i > 0 && v < offsets[i - 1])) {
        GB_GRAPH_ATOMIC_MIN(&flags[0], (GB_GRAPH_U32)i);
      } else if ((i == 0 && v != (GB_T)0) || (i == n && v != (GB_T)m)) {
        GB_GRAPH_ATOMIC_MIN(&flags[0], (GB_GRAPH_U32)(n + 1));
      }
    }
    if (i < m) {
      if (!gb_graph_is_whole(neighbors[i], (GB_T)n)) GB_GRAPH_ATOMIC_MIN(&flags[1], (GB_GRAPH_U32)i);
      if (check_weights != 0 && weights[i] < (GB_T)0) GB_GRAPH_ATOMIC_MIN(&flags[2], (GB_GRAPH_U32)i);
    }
  }
}

/* One work-item: the validation result into aux[0..11]: ok flags (1 = valid) of the offsets,
   neighbours and weights, then the first bad offset index with offsets[i-1] and offsets[i], the
   first bad neighbour index and its value, the first negative weight's edge, source node (found
   by binary search; meaningful when the offsets are valid), target and weight. */
GB_KERNEL void gb_graph_check_publish(GB_GLOBAL const GB_T* offsets, GB_GLOBAL const GB_T* neighbors,
                                      GB_GLOBAL const GB_T* weights, GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* aux,
                                      GB_SIZE n) {
  if (GB_THREAD_ID != 0) return;
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  GB_GRAPH_U32 bad_offset = flags[0], bad_neighbor = flags[1], bad_weight = flags[2];
  aux[0] = bad_offset == GB_GRAPH_NONE ? (GB_T)1 : (GB_T)0;
  aux[1] = bad_neighbor == GB_GRAPH_NONE ? (GB_T)1 : (GB_T)0;
  aux[2] = bad_weight == GB_GRAPH_NONE ? (GB_T)1 : (GB_T)0;
  for (int k = 3; k < 12; ++k) aux[k] = (GB_T)0;
  if (bad_offset != GB_GRAPH_NONE) {
    aux[3] = (GB_T)bad_offset;
    if (bad_offset <= n) {
      aux[4] = bad_offset > 0 ? offsets[bad_offset - 1] : (GB_T)0;
      aux[5] = offsets[bad_offset];
    }
  }
  if (bad_neighbor != GB_GRAPH_NONE) {
    aux[6] = (GB_T)bad_neighbor;
    aux[7] = neighbors[bad_neighbor];
  }
  if (bad_weight != GB_GRAPH_NONE) {
    GB_T e = (GB_T)bad_weight;
    GB_SIZE lo = 0, hi = n; /* offsets[lo] <= e < offsets[hi] when the offsets are valid */
    while (hi - lo > 1) {
      GB_SIZE mid = lo + (hi - lo) / 2;
      if (offsets[mid] <= e) lo = mid; else hi = mid;
    }
    aux[8] = e;
    aux[9] = (GB_T)lo;
    aux[10] = neighbors[bad_weight];
    aux[11] = weights[bad_weight];
  }
}

/* One work-item: aux[at] = 1 when nothing changed since the last call (flags[3] == 0), else 0;
   clears flags[3]. */
GB_KERNEL void gb_graph_publish_settled(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* aux, GB_SIZE at) {
  if (GB_THREAD_ID != 0) return;
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  aux[at] = flags[3] == 0 ? (GB_T)1 : (GB_T)0;
  flags[3] = 0;
}

/* ---- BFS: levels as u32 in the fill region, GB_GRAPH_NONE = unvisited. ---- */

GB_KERNEL void gb_graph_bfs_init(GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE source) {
  GB_GLOBAL GB_GRAPH_U32* level = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) level[i] = i == source ? 0u : GB_GRAPH_NONE;
}

/* Expands the nodes at level `depth`: each unvisited neighbour is claimed once by
   compare-and-swap (a level only ever changes from NONE to depth + 1 in this pass, so the test
   level[u] == depth is stable), and the claim sets the changed flag. */
GB_KERNEL void gb_graph_bfs_expand(GB_GLOBAL const GB_T* offsets, GB_GLOBAL const GB_T* neighbors,
                                   GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE depth) {
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  GB_GLOBAL GB_GRAPH_U32* level = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  GB_GRAPH_U32 next = (GB_GRAPH_U32)depth + 1u;
  for (GB_SIZE u = GB_THREAD_ID; u < n; u += GB_THREAD_COUNT) {
    if (level[u] != (GB_GRAPH_U32)depth) continue;
    GB_SIZE end = (GB_SIZE)offsets[u + 1];
    for (GB_SIZE e = (GB_SIZE)offsets[u]; e < end; ++e) {
      GB_SIZE v = (GB_SIZE)neighbors[e];
      if (level[v] == GB_GRAPH_NONE && GB_GRAPH_ATOMIC_CAS(&level[v], GB_GRAPH_NONE, next) == GB_GRAPH_NONE) {
        GB_GRAPH_ATOMIC_OR(&flags[3], 1u);
      }
    }
  }
}

/* out[i] = level, -1 when unreachable. */
GB_KERNEL void gb_graph_bfs_levels_out(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* out, GB_SIZE n) {
  GB_GLOBAL GB_GRAPH_U32* level = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) {
    out[i] = level[i] == GB_GRAPH_NONE ? (GB_T)-1 : (GB_T)level[i];
  }
}

/* ---- In-edge CSR: count (fill = in-degrees), scan (in_off, fill = cursors), scatter. ---- */

GB_KERNEL void gb_graph_count_in(GB_GLOBAL const GB_T* neighbors, GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE m) {
  GB_GLOBAL GB_GRAPH_U32* fill = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  for (GB_SIZE e = GB_THREAD_ID; e < m; e += GB_THREAD_COUNT) {
    GB_GRAPH_ATOMIC_ADD(&fill[(GB_SIZE)neighbors[e]], 1u);
  }
}

/* Launched with exactly one work-group: exclusive scan of the in-degrees, chunk by chunk. */
GB_KERNEL void gb_graph_scan_in(GB_GLOBAL GB_T* s, GB_SIZE n) {
  GB_LOCAL GB_GRAPH_U32 part[GB_GROUP_SIZE];
  GB_GLOBAL GB_GRAPH_U32* in_off = GB_GRAPH_U32_AT(s, gb_graph_in_off_at(n));
  GB_GLOBAL GB_GRAPH_U32* fill = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  unsigned lid = GB_LOCAL_ID;
  GB_GRAPH_U32 carry = 0;
  if (lid == 0) in_off[0] = 0;
  for (GB_SIZE base = 0; base < n; base += GB_GROUP_SIZE) {
    GB_SIZE i = base + lid;
    GB_GRAPH_U32 x = i < n ? fill[i] : 0u;
    part[lid] = x;
    GB_BARRIER();
    for (unsigned stride = 1; stride < GB_GROUP_SIZE; stride <<= 1) {
      GB_GRAPH_U32 add = lid >= stride ? part[lid - stride] : 0u;
      GB_BARRIER();
      part[lid] += add;
      GB_BARRIER();
    }
    if (i < n) {
      in_off[i + 1] = carry + part[lid];
      fill[i] = carry + part[lid] - x;
    }
    carry += part[GB_GROUP_SIZE - 1];
    GB_BARRIER();
  }
}

/* Per source node u: each arc u -> v takes the next slot of v's in-list (order within a list
   depends on timing). mode 0: value = weight (SSSP); 1: transition probability 1 / out_w[u];
   2: weight / out_w[u] (weighted PageRank); 0 where u is dangling (out_w[u] == 0). */
GB_KERNEL void gb_graph_scatter_in(GB_GLOBAL const GB_T* offsets, GB_GLOBAL const GB_T* neighbors,
                                   GB_GLOBAL const GB_T* weights, GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE m,
                                   GB_SIZE mode) {
  GB_GLOBAL GB_GRAPH_U32* fill = GB_GRAPH_U32_AT(s, gb_graph_fill_at(n));
  GB_GLOBAL GB_GRAPH_U32* in_src = GB_GRAPH_U32_AT(s, gb_graph_in_src_at(n));
  GB_GLOBAL GB_T* in_val = s + gb_graph_in_val_at(n, m);
  GB_GLOBAL const GB_T* out_w = s + gb_graph_out_w_at(n, m);
  for (GB_SIZE u = GB_THREAD_ID; u < n; u += GB_THREAD_COUNT) {
    GB_SIZE end = (GB_SIZE)offsets[u + 1];
    GB_T inverse = (GB_T)0;
    if (mode != 0 && out_w[u] != (GB_T)0) inverse = (GB_T)1 / out_w[u];
    for (GB_SIZE e = (GB_SIZE)offsets[u]; e < end; ++e) {
      GB_GRAPH_U32 slot = GB_GRAPH_ATOMIC_ADD(&fill[(GB_SIZE)neighbors[e]], 1u);
      in_src[slot] = (GB_GRAPH_U32)u;
      if (mode == 0) {
        in_val[slot] = weights[e];
      } else {
        in_val[slot] = (mode == 2 ? weights[e] : (GB_T)1) * inverse;
      }
    }
  }
}

/* ---- SSSP: Jacobi-style Bellman-Ford over the in-edge CSR. A round reads one distance buffer
   and writes the other, each work-item writing only its own nodes: no races, no double atomics.
   After round k every distance is at most the length of the shortest path of <= k arcs and is
   always the length of some real path, so a round that changes nothing has reached the shortest
   distances (non-negative weights: at most n - 1 rounds change anything). ---- */

GB_KERNEL void gb_graph_sssp_init(GB_GLOBAL GB_T* dist, GB_SIZE n, GB_SIZE source, GB_T unreachable) {
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) dist[i] = i == source ? (GB_T)0 : unreachable;
}

/* parity 0: out-slot -> other region; 1: the reverse. Sets flags[3] when a distance drops. */
GB_KERNEL void gb_graph_sssp_relax(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* dist_slot, GB_SIZE n, GB_SIZE m,
                                   GB_SIZE parity) {
  GB_GLOBAL GB_GRAPH_U32* flags = GB_GRAPH_U32_AT(s, 0);
  GB_GLOBAL const GB_GRAPH_U32* in_off = GB_GRAPH_U32_AT(s, gb_graph_in_off_at(n));
  GB_GLOBAL const GB_GRAPH_U32* in_src = GB_GRAPH_U32_AT(s, gb_graph_in_src_at(n));
  GB_GLOBAL const GB_T* in_val = s + gb_graph_in_val_at(n, m);
  GB_GLOBAL GB_T* other = s + gb_graph_other_at(n, m);
  GB_GLOBAL const GB_T* from = parity == 0 ? dist_slot : other;
  GB_GLOBAL GB_T* to = parity == 0 ? other : dist_slot;
  for (GB_SIZE v = GB_THREAD_ID; v < n; v += GB_THREAD_COUNT) {
    GB_T best = from[v];
    GB_SIZE end = in_off[v + 1];
    for (GB_SIZE e = in_off[v]; e < end; ++e) {
      GB_T candidate = from[in_src[e]] + in_val[e];
      if (candidate < best) best = candidate;
    }
    to[v] = best;
    if (best < from[v]) GB_GRAPH_ATOMIC_OR(&flags[3], 1u);
  }
}

/* ---- PageRank: pull-based power iteration as the CPU's (networkx semantics). Iterations after
   convergence (state[1] != 0) do nothing, so the host may enqueue several between reads. ---- */

/* out_w[u] = sum of u's arc weights (1 each when unweighted), in CSR order. */
GB_KERNEL void gb_graph_out_weight(GB_GLOBAL const GB_T* offsets, GB_GLOBAL const GB_T* weights, GB_GLOBAL GB_T* s,
                                   GB_SIZE n, GB_SIZE m, GB_SIZE weighted) {
  GB_GLOBAL GB_T* out_w = s + gb_graph_out_w_at(n, m);
  for (GB_SIZE u = GB_THREAD_ID; u < n; u += GB_THREAD_COUNT) {
    GB_T acc = (GB_T)0;
    GB_SIZE end = (GB_SIZE)offsets[u + 1];
    for (GB_SIZE e = (GB_SIZE)offsets[u]; e < end; ++e) acc += weighted != 0 ? weights[e] : (GB_T)1;
    out_w[u] = acc;
  }
}

GB_KERNEL void gb_graph_pagerank_init(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* ranks, GB_SIZE n, GB_SIZE m, GB_T start) {
  GB_GLOBAL GB_T* state = s + gb_graph_state_at(n, m);
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) ranks[i] = start;
  if (GB_THREAD_ID < 4) state[GB_THREAD_ID] = (GB_T)0;
}

/* Per-group partial sums of the dangling nodes' ranks. */
GB_KERNEL void gb_graph_dangling_partial(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* rank_slot, GB_SIZE n, GB_SIZE m,
                                         GB_SIZE parity) {
  GB_LOCAL GB_T part[GB_GROUP_SIZE];
  GB_GLOBAL const GB_T* state = s + gb_graph_state_at(n, m);
  if (state[1] != (GB_T)0) return;
  GB_GLOBAL const GB_T* out_w = s + gb_graph_out_w_at(n, m);
  GB_GLOBAL const GB_T* ranks = parity == 0 ? rank_slot : s + gb_graph_other_at(n, m);
  GB_T acc = (GB_T)0;
  for (GB_SIZE u = GB_THREAD_ID; u < n; u += GB_THREAD_COUNT) {
    if (out_w[u] == (GB_T)0) acc += ranks[u];
  }
  gb_group_sum_store(part, acc, s + gb_graph_partials_at(n, m) + GB_GROUP_ID);
}

/* Launched with exactly one work-group: state[0] = the sum of `groups` partials. */
GB_KERNEL void gb_graph_dangling_total(GB_GLOBAL GB_T* s, GB_SIZE n, GB_SIZE m, GB_SIZE groups) {
  GB_LOCAL GB_T part[GB_GROUP_SIZE];
  GB_GLOBAL GB_T* state = s + gb_graph_state_at(n, m);
  if (state[1] != (GB_T)0) return;
  GB_GLOBAL const GB_T* partials = s + gb_graph_partials_at(n, m);
  GB_T acc = (GB_T)0;
  for (GB_SIZE i = GB_LOCAL_ID; i < groups; i += GB_GROUP_SIZE) acc += partials[i];
  gb_group_sum_store(part, acc, state);
}

/* next[v] = damping * (sum of in-neighbour rank * probability + dangling / n) + teleport, and
   per-group partial sums of |next - rank|. */
GB_KERNEL void gb_graph_pagerank_step(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* rank_slot, GB_SIZE n, GB_SIZE m,
                                      GB_SIZE parity, GB_T damping, GB_T teleport) {
  GB_LOCAL GB_T part[GB_GROUP_SIZE];
  GB_GLOBAL const GB_T* state = s + gb_graph_state_at(n, m);
  if (state[1] != (GB_T)0) return;
  GB_GLOBAL const GB_GRAPH_U32* in_off = GB_GRAPH_U32_AT(s, gb_graph_in_off_at(n));
  GB_GLOBAL const GB_GRAPH_U32* in_src = GB_GRAPH_U32_AT(s, gb_graph_in_src_at(n));
  GB_GLOBAL const GB_T* in_val = s + gb_graph_in_val_at(n, m);
  GB_GLOBAL GB_T* other = s + gb_graph_other_at(n, m);
  GB_GLOBAL const GB_T* ranks = parity == 0 ? rank_slot : other;
  GB_GLOBAL GB_T* next = parity == 0 ? other : rank_slot;
  GB_T spread = state[0] / (GB_T)n;
  GB_T change = (GB_T)0;
  for (GB_SIZE v = GB_THREAD_ID; v < n; v += GB_THREAD_COUNT) {
    GB_T incoming = (GB_T)0;
    GB_SIZE end = in_off[v + 1];
    for (GB_SIZE e = in_off[v]; e < end; ++e) incoming += ranks[in_src[e]] * in_val[e];
    GB_T value = damping * (incoming + spread) + teleport;
    next[v] = value;
    change += GB_FABS(value - ranks[v]);
  }
  gb_group_sum_store(part, change, s + gb_graph_partials_at(n, m) + GB_GROUP_ID);
}

/* Launched with exactly one work-group: the iteration's L1 change into aux[at + 1]; when it is
   below the tolerance, marks convergence (state[1]) and records the iteration in aux[at]. */
GB_KERNEL void gb_graph_pagerank_finish(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* aux, GB_SIZE n, GB_SIZE m, GB_SIZE groups,
                                        GB_SIZE at, GB_SIZE iteration, GB_T tolerance) {
  GB_LOCAL GB_T part[GB_GROUP_SIZE];
  GB_GLOBAL GB_T* state = s + gb_graph_state_at(n, m);
  if (state[1] != (GB_T)0) return;
  GB_GLOBAL const GB_T* partials = s + gb_graph_partials_at(n, m);
  GB_T acc = (GB_T)0;
  for (GB_SIZE i = GB_LOCAL_ID; i < groups; i += GB_GROUP_SIZE) acc += partials[i];
  gb_group_sum_store(part, acc, aux + at + 1);
  if (GB_LOCAL_ID == 0) {
    if (aux[at + 1] < tolerance) {
      state[1] = (GB_T)1;
      aux[at] = (GB_T)iteration;
    } else {
      aux[at] = (GB_T)0;
    }
  }
}

/* out[i] = the other region's value (the result when the converged iteration wrote there). */
GB_KERNEL void gb_graph_copy_other(GB_GLOBAL GB_T* s, GB_GLOBAL GB_T* out, GB_SIZE n, GB_SIZE m) {
  GB_GLOBAL const GB_T* other = s + gb_graph_other_at(n, m);
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) out[i] = other[i];
}
)GBSRC";

}  // namespace

std::string_view graph_kernel_source() { return kGraphSource; }

}  // namespace gpubridge::compute::detail
