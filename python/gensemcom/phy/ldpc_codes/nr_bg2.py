"""3GPP 5G NR LDPC base graph 2 (TS 38.212, section 5.3.2) with its shift tables.

Base graph 2 (BG2) is the NR graph for small blocks and low rates: 42 rows x
52 columns, 197 non-zero entries.  ``V[i_LS]`` below is the shift coefficient
table of TS 38.212 Table 5.3.2-3 for the eight lifting-size sets
``i_LS = 0 .. 7`` of Table 5.3.2-1 (``z = a * 2**j`` with
``a = 2, 3, 5, 7, 9, 11, 13, 15`` for ``i_LS = 0 .. 7``, ``z <= 384``).  For a
lifting size ``z`` the lifted shift of entry ``(i, j)`` is ``V[i_LS(z)] mod z``
and the z x z block is the identity cyclically shifted right by that amount
(row r has its one in column ``(r + shift) mod z``), as in :mod:`.wimax`.

Structure (what :class:`gensemcom.phy.ldpc.NRLDPCCode` relies on):

* columns 0 .. 9: the 10 systematic (information) block columns (k = 10 z);
  columns 0 and 1 (the two heaviest, degree 22 and 23) are punctured: built
  by the encoder but never transmitted;
* rows 0 .. 3 with columns 10 .. 13: the core.  Its parity part is
  double-diagonal-like: column 10 has three entries (rows 0, 2, 3; shifts
  ``(0, 1, 0)`` or, for ``i_LS`` in {3, 7}, ``(1, 0, 1)``) and columns 11 .. 13
  form a shift-0 dual diagonal (rows 0/1, 1/2, 2/3), so the 4z x 4z core
  parity matrix is invertible;
* rows 4 .. 41 (extension): row ``i`` touches only columns 0 .. 13 and its own
  degree-1 parity column ``10 + i`` (shift 0), so each extension parity block
  follows directly from its row.  Using only the first ``m`` rows (and
  ``10 + m`` columns) gives the rate-compatible family: ``m = 42`` -> rate
  10/50 = 1/5 after puncturing, ``m = 32`` -> 1/4, ``m = 22`` -> 1/3.

Source: 3GPP TS 38.212 V15+ Table 5.3.2-3.  Transcribed from the tables of
NVIDIA Sionna (``sionna/fec/ldpc/codes/5G_bg2.csv``, identical in
``catkira/py3gpp``) and cross-checked entry by entry against the eight lifted
matrices ``BG2_matrices`` of srsRAN Project
(``lib/phy/upper/channel_coding/ldpc/ldpc_luts_impl.cpp``): all 197 positions
and 8 x 197 coefficients agree.  Row degrees 8, 10, 8, 10 (core) and
3 .. 6 (extension); column degrees 22, 23, 10, 5, 5, 14, 7, 13, 6, 8 (systematic),
9, 16, 9, 12 (core parity) and 1 (extension parity).  The codewords are verified
against H in ``tests/test_ldpc_nr.py``.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

N_ROWS = 42
N_COLS = 52
#: Systematic (information) block columns: k = K_B * z.
K_B = 10
#: Leading systematic block columns that are punctured (not transmitted).
N_PUNCT = 2
#: Rows of the core (their parity block columns are K_B .. K_B + N_CORE - 1).
N_CORE = 4
#: Number of non-zero entries of the base graph.
N_ENTRIES = 197

#: Table 5.3.2-1: a of each lifting-size set i_LS (z = a * 2**j, z <= 384).
SET_BASES = (2, 3, 5, 7, 9, 11, 13, 15)
Z_MAX = 384


def _lifting_sets() -> Dict[int, int]:
    out = {}
    for i_ls, a in enumerate(SET_BASES):
        z = a
        while z <= Z_MAX:
            out[z] = i_ls
            z *= 2
    return out


#: Lifting size z -> set index i_LS (51 sizes, 2 ... 384).
Z_TO_SET: Dict[int, int] = _lifting_sets()
#: All valid lifting sizes, ascending.
LIFTING_SIZES: Tuple[int, ...] = tuple(sorted(Z_TO_SET))

#: Nominal rate -> number of base-graph rows used (after puncturing N_PUNCT
#: columns: rate = K_B / (K_B + rows - N_PUNCT)).
RATE_ROWS: Dict[str, int] = {"1/5": 42, "1/4": 32, "1/3": 22}

# One line per non-zero entry: row, column, V for i_LS = 0 .. 7.
_TABLE = """
 0  0   9 174   0  72   3 156 143 145
 0  1 117  97   0 110  26 143  19 131
 0  2 204 166   0  23  53  14 176  71
 0  3  26  66   0 181  35   3 165  21
 0  6 189  71   0  95 115  40 196  23
 0  9 205 172   0   8 127 123  13 112
 0 10   0   0   0   1   0   0   0   1
 0 11   0   0   0   0   0   0   0   0
 1  0 167  27 137  53  19  17  18 142
 1  3 166  36 124 156  94  65  27 174
 1  4 253  48   0 115 104  63   3 183
 1  5 125  92   0 156  66   1 102  27
 1  6 226  31  88 115  84  55 185  96
 1  7 156 187   0 200  98  37  17  23
 1  8 224 185   0  29  69 171  14   9
 1  9 252   3  55  31  50 133 180 167
 1 11   0   0   0   0   0   0   0   0
 1 12   0   0   0   0   0   0   0   0
 2  0  81  25  20 152  95  98 126  74
 2  1 114 114  94 131 106 168 163  31
 2  3  44 117  99  46  92 107  47   3
 2  4  52 110   9 191 110  82 183  53
 2  8 240 114 108  91 111 142 132 155
 2 10   1   1   1   0   1   1   1   0
 2 12   0   0   0   0   0   0   0   0
 2 13   0   0   0   0   0   0   0   0
 3  1   8 136  38 185 120  53  36 239
 3  2  58 175  15   6 121 174  48 171
 3  4 158 113 102  36  22 174  18  95
 3  5 104  72 146 124   4 127 111 110
 3  6 209 123  12 124  73  17 203 159
 3  7  54 118  57 110  49  89   3 199
 3  8  18  28  53 156 128  17 191  43
 3  9 128 186  46 133  79 105 160  75
 3 10   0   0   0   1   0   0   0   1
 3 13   0   0   0   0   0   0   0   0
 4  0 179  72   0 200  42  86  43  29
 4  1 214  74 136  16  24  67  27 140
 4 11  71  29 157 101  51  83 117 180
 4 14   0   0   0   0   0   0   0   0
 5  0 231  10   0 185  40  79 136 121
 5  1  41  44 131 138 140  84  49  41
 5  5 194 121 142 170  84  35  36 169
 5  7 159  80 141 219 137 103 132  88
 5 11 103  48  64 193  71  60  62 207
 5 15   0   0   0   0   0   0   0   0
 6  0 155 129   0 123 109  47   7 137
 6  5 228  92 124  55  87 154  34  72
 6  7  45 100  99  31 107  10 198 172
 6  9  28  49  45 222 133 155 168 124
 6 11 158 184 148 209 139  29  12  56
 6 16   0   0   0   0   0   0   0   0
 7  1 129  80   0 103  97  48 163  86
 7  5 147 186  45  13 135 125  78 186
 7  7 140  16 148 105  35  24 143  87
 7 11   3 102  96 150 108  47 107 172
 7 13 116 143  78 181  65  55  58 154
 7 17   0   0   0   0   0   0   0   0
 8  0 142 118   0 147  70  53 101 176
 8  1  94  70  65  43  69  31 177 169
 8 12 230 152  87 152  88 161  22 225
 8 18   0   0   0   0   0   0   0   0
 9  1 203  28   0   2  97 104 186 167
 9  8 205 132  97  30  40 142  27 238
 9 10  61 185  51 184  24  99 205  48
 9 11 247 178  85  83  49  64  81  68
 9 19   0   0   0   0   0   0   0   0
10  0  11  59   0 174  46 111 125  38
10  1 185 104  17 150  41  25  60 217
10  6   0  22 156   8 101 174 177 208
10  7 117  52  20  56  96  23  51 232
10 20   0   0   0   0   0   0   0   0
11  0  11  32   0  99  28  91  39 178
11  7 236  92   7 138  30 175  29 214
11  9 210 174   4 110 116  24  35 168
11 13  56 154   2  99  64 141   8  51
11 21   0   0   0   0   0   0   0   0
12  1  63  39   0  46  33 122  18 124
12  3 111  93 113 217 122  11 155 122
12 11  14  11  48 109 131   4  49  72
12 22   0   0   0   0   0   0   0   0
13  0  83  49   0  37  76  29  32  48
13  1   2 125 112 113  37  91  53  57
13  8  38  35 102 143  62  27  95 167
13 13 222 166  26 140  47 127 186 219
13 23   0   0   0   0   0   0   0   0
14  1 115  19   0  36 143  11  91  82
14  6 145 118 138  95  51 145  20 232
14 11   3  21  57  40 130   8  52 204
14 13 232 163  27 116  97 166 109 162
14 24   0   0   0   0   0   0   0   0
15  0  51  68   0 116 139 137 174  38
15 10 175  63  73 200  96 103 108 217
15 11 213  81  99 110 128  40 102 157
15 25   0   0   0   0   0   0   0   0
16  1 203  87   0  75  48  78 125 170
16  9 142 177  79 158   9 158  31  23
16 11   8 135 111 134  28  17  54 175
16 12 242  64 143  97   8 165 176 202
16 26   0   0   0   0   0   0   0   0
17  1 254 158   0  48 120 134  57 196
17  5 124  23  24 132  43  23 201 173
17 11 114   9 109 206  65  62 142 195
17 12  64   6  18   2  42 163  35 218
17 27   0   0   0   0   0   0   0   0
18  0 220 186   0  68  17 173 129 128
18  6 194   6  18  16 106  31 203 211
18  7  50  46  86 156 142  22 140 210
18 28   0   0   0   0   0   0   0   0
19  0  87  58   0  35  79  13 110  39
19  1  20  42 158 138  28 135 124  84
19 10 185 156 154  86  41 145  52  88
19 29   0   0   0   0   0   0   0   0
20  1  26  76   0   6   2 128 196 117
20  4 105  61 148  20 103  52  35 227
20 11  29 153 104 141  78 173 114   6
20 30   0   0   0   0   0   0   0   0
21  0  76 157   0  80  91 156  10 238
21  8  42 175  17  43  75 166 122  13
21 13 210  67  33  81  81  40  23  11
21 31   0   0   0   0   0   0   0   0
22  1 222  20   0  49  54  18 202 195
22  2  63  52   4   1 132 163 126  44
22 32   0   0   0   0   0   0   0   0
23  0  23 106   0 156  68 110  52   5
23  3 235  86  75  54 115 132 170  94
23  5 238  95 158 134  56 150  13 111
23 33   0   0   0   0   0   0   0   0
24  1  46 182   0 153  30 113 113  81
24  2 139 153  69  88  42 108 161  19
24  9   8  64  87  63 101  61  88 130
24 34   0   0   0   0   0   0   0   0
25  0 228  45   0 211 128  72 197  66
25  5 156  21  65  94  63 136 194  95
25 35   0   0   0   0   0   0   0   0
26  2  29  67   0  90 142  36 164 146
26  7 143 137 100   6  28  38 172  66
26 12 160  55  13 221 100  53  49 190
26 13 122  85   7   6 133 145 161  86
26 36   0   0   0   0   0   0   0   0
27  0   8 103   0  27  13  42 168  64
27  6 151  50  32 118  10 104 193 181
27 37   0   0   0   0   0   0   0   0
28  1  98  70   0 216 106  64  14   7
28  2 101 111 126 212  77  24 186 144
28  5 135 168 110 193  43 149  46  16
28 38   0   0   0   0   0   0   0   0
29  0  18 110   0 108 133 139  50  25
29  4  28  17 154  61  25 161  27  57
29 39   0   0   0   0   0   0   0   0
30  2  71 120   0 106  87  84  70  37
30  5 240 154  35  44  56 173  17 139
30  7   9  52  51 185 104  93  50 221
30  9  84  56 134 176  70  29   6  17
30 40   0   0   0   0   0   0   0   0
31  1 106   3   0 147  80 117 115 201
31 13   1 170  20 182 139 148 189  46
31 41   0   0   0   0   0   0   0   0
32  0 242  84   0 108  32 116 110 179
32  5  44   8  20  21  89  73   0  14
32 12 166  17 122 110  71 142 163 116
32 42   0   0   0   0   0   0   0   0
33  2 132 165   0  71 135 105 163  46
33  7 164 179  88  12   6 137 173   2
33 10 235 124  13 109   2  29 179 106
33 43   0   0   0   0   0   0   0   0
34  0 147 173   0  29  37  11 197 184
34 12  85 177  19 201  25  41 191 135
34 13  36  12  78  69 114 162 193 141
34 44   0   0   0   0   0   0   0   0
35  1  57  77   0  91  60 126 157  85
35  5  40 184 157 165 137 152 167 225
35 11  63  18   6  55  93 172 181 175
35 45   0   0   0   0   0   0   0   0
36  0 140  25   0   1 121  73 197 178
36  2  38 151  63 175 129 154 167 112
36  7 154 170  82  83  26 129 179 106
36 46   0   0   0   0   0   0   0   0
37 10 219  37   0  40  97 167 181 154
37 13 151  31 144  12  56  38 193 114
37 47   0   0   0   0   0   0   0   0
38  1  31  84   0  37   1 112 157  42
38  5  66 151  93  97  70   7 173  41
38 11  38 190  19  46   1  19 191 105
38 48   0   0   0   0   0   0   0   0
39  0 239  93   0 106 119 109 181 167
39  7 172 132  24 181  32   6 157  45
39 12  34  57 138 154 142 105 173 189
39 49   0   0   0   0   0   0   0   0
40  2   0 103   0  98   6 160 193  78
40 10  75 107  36  35  73 156 163  67
40 13 120 163 143  36 102  82 179 180
40 50   0   0   0   0   0   0   0   0
41  1 129 147   0 120  48 132 191  53
41  5 229   7   2 101  47   6 197 215
41 11 118  60  55  81  19   8 167 230
41 51   0   0   0   0   0   0   0   0
"""


def shift_table() -> np.ndarray:
    """Return the raw shift coefficients of every lifting-size set.

    Returns:
        int64 array (8, 42, 52): ``V[i_LS, row, col]``, -1 where the base
        graph has no edge.
    """
    vals = np.array(_TABLE.split(), dtype=np.int64).reshape(-1, 2 + len(SET_BASES))
    if vals.shape[0] != N_ENTRIES:
        raise AssertionError(f"corrupt NR BG2 table: {vals.shape[0]} entries")
    out = -np.ones((len(SET_BASES), N_ROWS, N_COLS), np.int64)
    out[:, vals[:, 0], vals[:, 1]] = vals[:, 2:].T
    return out


def set_index(z: int) -> int:
    """Return the lifting-size set index i_LS of ``z`` (Table 5.3.2-1).

    Raises:
        ValueError: ``z`` is not an NR lifting size.
    """
    try:
        return Z_TO_SET[int(z)]
    except KeyError:
        raise ValueError(f"{z} is not an NR lifting size; valid: {list(LIFTING_SIZES)}") from None


def base_matrix(z: int, n_rows: int = N_ROWS) -> np.ndarray:
    """Return BG2 lifted for size ``z``, restricted to its first ``n_rows`` rows.

    Args:
        z: Lifting size, one of :data:`LIFTING_SIZES`.
        n_rows: Rows to keep, ``N_CORE <= n_rows <= N_ROWS``; the columns are
            cut to the ``K_B + n_rows`` that those rows touch.

    Returns:
        int64 array (n_rows, K_B + n_rows); -1 marks zero blocks, otherwise the
        cyclic shift ``V mod z`` in [0, z).

    Raises:
        ValueError: Invalid lifting size or row count.
    """
    i_ls = set_index(z)
    if not N_CORE <= int(n_rows) <= N_ROWS:
        raise ValueError(f"n_rows must be in [{N_CORE}, {N_ROWS}], got {n_rows}")
    v = shift_table()[i_ls, :n_rows, :K_B + n_rows]
    return np.where(v >= 0, v % int(z), -1)
