/* The compiled twin of the feature path (history.py and buffer.py).
 *
 * `FeatureState` holds the same state as the Python code and does the same arithmetic in the same
 * order, in double precision, and stores doubles where Python packs into its float64 vector
 * (struct 'd' / memoryview 'd'). Built with -ffp-contract=off so no multiply-add is fused:
 * results are bit-identical to the Python path, which tests prove on real and generated streams. Two modes, as in buffer.py: history (every
 * running statistic, mid features written on each quote) and light (top of book and trades
 * kept, the few selected values computed in compute()).
 *
 * Errors the Python code would raise (log of a non-positive mid, division by zero, a bad book
 * bundle) raise the same Python exceptions here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <string.h>

#define N_MID 12 /* MID_FEATURES in config.py */
#define BOOK_IMBALANCE 4
#define PACKED_RETURNS 3
#define SOURCE_FLOW (-1)
#define SOURCE_SINCE (-2)

typedef struct {
    PyObject_HEAD
    /* parameters */
    double a_vol, a_rsi, a_norm, a_fast, a_slow, a_signal, a_flow, k2;
    Py_ssize_t window, size, n_horizons, n_full, n_out;
    Py_ssize_t *horizons;
    Py_ssize_t *source; /* per output slot: index into full, SOURCE_FLOW or SOURCE_SINCE */
    double *logs, *mids; /* rings of log-mid and mid, NaN until written */
    double *full;        /* MID_FEATURES then the returns (at least PACKED_RETURNS of them) */
    Py_buffer out;       /* the FeatureBuffer's float64 vector */
    /* state */
    long long ts_recv, last_trade_ts, n_mid_updates, n_trades;
    Py_ssize_t pos, run;
    double fast, slow, signal, spread_m, spread_v, var, gain, loss, vol_m, vol_v;
    double bb_ref, bb_s, bb_q, flow_s, flow_v;
    int light; /* light mode: only the top of book, the depths and the trade state are kept */
    double bid, bid_sz, ask, ask_sz, depth_bid, depth_ask;
} FeatureState;

static inline Py_ssize_t wrap(Py_ssize_t index, Py_ssize_t size) {
    return index < 0 ? index + size : index; /* Python's negative indexing of the rings */
}

static int zero_division(void) {
    PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
    return -1;
}

static void clear_state(FeatureState *s) {
    for (Py_ssize_t i = 0; i < s->size; i++) s->logs[i] = s->mids[i] = NAN;
    for (Py_ssize_t i = 0; i < s->n_full; i++) s->full[i] = NAN;
    double *out = (double *)s->out.buf;
    for (Py_ssize_t i = 0; i < s->n_out; i++) out[i] = NAN;
    s->ts_recv = s->last_trade_ts = s->n_mid_updates = s->n_trades = 0;
    s->pos = -1;
    s->run = 0;
    s->fast = s->slow = s->signal = s->spread_m = s->spread_v = s->var = 0.0;
    s->gain = s->loss = s->vol_m = s->vol_v = s->bb_ref = s->bb_s = s->bb_q = 0.0;
    s->flow_s = s->flow_v = 0.0;
    s->bid = s->bid_sz = s->ask = s->ask_sz = s->depth_bid = s->depth_ask = NAN;
}

/* history.py's on_quote, line for line. */
static int quote(FeatureState *s, long long ts, double bid_px, double bid_sz, double ask_px,
                 double ask_sz) {
    s->ts_recv = ts;
    long long n = ++s->n_mid_updates;
    if (s->light) { /* buffer.py's _light_quote */
        s->bid = bid_px;
        s->bid_sz = bid_sz;
        s->ask = ask_px;
        s->ask_sz = ask_sz;
        s->depth_bid = bid_sz;
        s->depth_ask = ask_sz;
        return 0;
    }
    double mid = (bid_px + ask_px) * 0.5;
    double spread = ask_px - bid_px;
    if (mid <= 0.0) {
        PyErr_SetString(PyExc_ValueError, "math domain error");
        return -1;
    }
    double log_mid = log(mid);
    Py_ssize_t size = s->size, pos = s->pos + 1;
    if (pos == size) pos = 0;
    s->pos = pos;
    double *logs = s->logs, *mids = s->mids;
    logs[pos] = log_mid;
    mids[pos] = mid;
    double prev = mids[wrap(pos - 1, size)];
    double r = log_mid - logs[wrap(pos - 1, size)];
    double d = mid - prev;
    if (n < 3) {
        if (n == 1) {
            s->fast = s->slow = mid;
            s->spread_m = spread;
        } else {
            s->var = r * r;
            s->gain = d > 0.0 ? d : 0.0;
            s->loss = d < 0.0 ? -d : 0.0;
            s->vol_m = sqrt(r * r);
        }
    }
    s->fast += s->a_fast * (mid - s->fast);
    s->slow += s->a_slow * (mid - s->slow);
    double macd = s->fast - s->slow;
    s->signal += s->a_signal * (macd - s->signal);
    s->spread_m += s->a_norm * (spread - s->spread_m);
    double dev = spread - s->spread_m;
    s->spread_v += s->a_norm * (dev * dev - s->spread_v);
    double spread_z = s->spread_v > 0.0 ? dev / sqrt(s->spread_v) : 0.0;
    double vol, rsi, vol_z;
    if (n > 1) {
        s->var += s->a_vol * (r * r - s->var);
        s->gain += s->a_rsi * ((d > 0.0 ? d : 0.0) - s->gain);
        s->loss += s->a_rsi * ((d < 0.0 ? -d : 0.0) - s->loss);
        rsi = s->gain + s->loss > 0.0 ? 100.0 * s->gain / (s->gain + s->loss) : 50.0;
        vol = sqrt(s->var);
        s->vol_m += s->a_norm * (vol - s->vol_m);
        dev = vol - s->vol_m;
        s->vol_v += s->a_norm * (dev * dev - s->vol_v);
        vol_z = s->vol_v > 0.0 ? dev / sqrt(s->vol_v) : 0.0;
    } else {
        vol = rsi = vol_z = NAN;
    }
    Py_ssize_t window = s->window;
    d = mid - s->bb_ref;
    s->bb_s += d;
    s->bb_q += d * d;
    if (n > window) {
        d = mids[wrap(pos - window, size)] - s->bb_ref;
        s->bb_s -= d;
        s->bb_q -= d * d;
    }
    s->run = mid == prev ? s->run + 1 : 1;
    if (pos == 0) { /* once a turn of the ring: exact sums around mid */
        s->bb_ref = mid;
        s->bb_s = s->bb_q = 0.0;
        Py_ssize_t end = n < window ? (Py_ssize_t)n : window;
        for (Py_ssize_t i = 1; i < end; i++) {
            d = mids[size - i] - mid;
            s->bb_s += d;
            s->bb_q += d * d;
        }
    }
    double pct_b;
    if (n < window) {
        pct_b = NAN;
    } else if (s->run >= window) {
        pct_b = 0.5;
    } else {
        double mean = s->bb_s / (double)window;
        double var_w = s->bb_q / (double)window - mean * mean;
        pct_b = var_w > 0.0 ? 0.5 + (mid - s->bb_ref - mean) / (s->k2 * sqrt(var_w)) : 0.5;
    }
    if (bid_sz + ask_sz == 0.0) return zero_division();
    double l1 = (bid_sz - ask_sz) / (bid_sz + ask_sz);
    double micro = (bid_px * ask_sz + ask_px * bid_sz) / (bid_sz + ask_sz) - mid;
    const double values[N_MID] = {mid,  spread, micro, l1,    l1,       vol,
                                  rsi,  macd,   macd - s->signal, pct_b, spread_z, vol_z};
    double *full = s->full;
    memcpy(full, values, sizeof values);
    Py_ssize_t n_returns = s->n_horizons > PACKED_RETURNS ? s->n_horizons : PACKED_RETURNS;
    for (Py_ssize_t k = 0; k < n_returns; k++) {
        /* fewer horizons than PACKED_RETURNS are padded with the first (as history.py) */
        Py_ssize_t h = s->horizons[k < s->n_horizons ? k : 0];
        full[N_MID + k] = log_mid - logs[wrap(pos - h, size)];
    }
    return 0;
}

static int read_double(PyObject *value, double *to) {
    *to = PyFloat_AsDouble(value);
    return *to == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int read_ts(PyObject *value, long long *to) {
    *to = PyLong_AsLongLong(value);
    return *to == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *FeatureState_on_quote(FeatureState *s, PyObject *const *args, Py_ssize_t nargs) {
    long long ts;
    double bid_px, bid_sz, ask_px, ask_sz;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "on_quote() takes 5 arguments (ts_recv, bid_px, bid_sz, ask_px, ask_sz), "
                     "got %zd", nargs);
        return NULL;
    }
    if (read_ts(args[0], &ts) < 0 || read_double(args[1], &bid_px) < 0 ||
        read_double(args[2], &bid_sz) < 0 || read_double(args[3], &ask_px) < 0 ||
        read_double(args[4], &ask_sz) < 0)
        return NULL;
    if (quote(s, ts, bid_px, bid_sz, ask_px, ask_sz) < 0) return NULL;
    Py_RETURN_NONE;
}

/* One float64 value of a memoryview column of a BookColumns bundle (negative rows count from
 * the end, as Python indexing does). */
static int column_value(PyObject *view, Py_ssize_t row, const char *name, double *to) {
    if (!PyMemoryView_Check(view)) {
        PyErr_Format(PyExc_TypeError, "on_book(): %s is %.100s, expected a memoryview", name,
                     Py_TYPE(view)->tp_name);
        return -1;
    }
    Py_buffer *b = PyMemoryView_GET_BUFFER(view);
    if (b->ndim != 1 || b->itemsize != 8 || b->format == NULL ||
        b->format[strlen(b->format) - 1] != 'd' || (b->strides && b->strides[0] != 8)) {
        PyErr_Format(PyExc_TypeError, "on_book(): %s is not a contiguous float64 memoryview",
                     name);
        return -1;
    }
    Py_ssize_t n = b->shape ? b->shape[0] : b->len / 8;
    Py_ssize_t at = row < 0 ? row + n : row;
    if (at < 0 || at >= n) {
        PyErr_Format(PyExc_IndexError, "on_book(): row %zd is out of range for %s (%zd rows)",
                     row, name, n);
        return -1;
    }
    *to = ((const double *)b->buf)[at];
    return 0;
}

static PyObject *level_zero(PyObject *levels, Py_ssize_t field, const char *name) {
    PyObject *side = PyTuple_GET_ITEM(levels, field);
    if (!PyTuple_Check(side) || PyTuple_GET_SIZE(side) < 1) {
        PyErr_Format(PyExc_TypeError, "on_book(): %s is not a non-empty tuple of columns", name);
        return NULL;
    }
    return PyTuple_GET_ITEM(side, 0);
}

static PyObject *FeatureState_on_book(FeatureState *s, PyObject *const *args, Py_ssize_t nargs) {
    long long ts;
    Py_ssize_t row;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "on_book() takes 3 arguments (ts_recv, levels, row), got %zd", nargs);
        return NULL;
    }
    PyObject *levels = args[1];
    if (!PyTuple_Check(levels) || PyTuple_GET_SIZE(levels) != 6) {
        PyErr_Format(PyExc_TypeError, "on_book(): levels is %.100s, expected a BookColumns",
                     Py_TYPE(levels)->tp_name);
        return NULL;
    }
    if (read_ts(args[0], &ts) < 0) return NULL;
    row = PyNumber_AsSsize_t(args[2], PyExc_IndexError);
    if (row == -1 && PyErr_Occurred()) return NULL;
    static const char *const names[4] = {"bid_px", "bid_sz", "ask_px", "ask_sz"};
    double top[4], depth_bid, depth_ask;
    for (Py_ssize_t i = 0; i < 4; i++) {
        PyObject *column = level_zero(levels, i, names[i]);
        if (column == NULL || column_value(column, row, names[i], &top[i]) < 0) return NULL;
    }
    if (quote(s, ts, top[0], top[1], top[2], top[3]) < 0) return NULL;
    if (column_value(PyTuple_GET_ITEM(levels, 4), row, "bid_depth", &depth_bid) < 0 ||
        column_value(PyTuple_GET_ITEM(levels, 5), row, "ask_depth", &depth_ask) < 0)
        return NULL;
    s->depth_bid = depth_bid;
    s->depth_ask = depth_ask;
    if (s->light) Py_RETURN_NONE; /* book_imbalance is computed on demand */
    if (depth_bid + depth_ask == 0.0) {
        zero_division();
        return NULL;
    }
    s->full[BOOK_IMBALANCE] = (depth_bid - depth_ask) / (depth_bid + depth_ask);
    Py_RETURN_NONE;
}

static PyObject *FeatureState_on_trade(FeatureState *s, PyObject *const *args, Py_ssize_t nargs) {
    long long ts;
    double sz, side;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "on_trade() takes 4 arguments (ts_recv, px, sz, side), got %zd", nargs);
        return NULL;
    }
    if (read_ts(args[0], &ts) < 0 || read_double(args[2], &sz) < 0 ||
        read_double(args[3], &side) < 0)
        return NULL;
    s->ts_recv = ts;
    s->last_trade_ts = ts;
    s->n_trades += 1;
    double signed_sz = side * sz;
    if (s->n_trades > 1) {
        double a = s->a_flow;
        s->flow_s += a * (signed_sz - s->flow_s);
        s->flow_v += a * (sz - s->flow_v);
    } else {
        s->flow_s = signed_sz;
        s->flow_v = sz;
    }
    Py_RETURN_NONE;
}

/* A ratio as Python computes it: ZeroDivisionError on a zero divisor (NaN divides quietly). */
static inline int ratio(double num, double den, double *to) {
    if (den == 0.0) return zero_division();
    *to = num / den;
    return 0;
}

/* buffer.py's getters (light mode): one value from the kept top of book. */
static int light_value(const FeatureState *s, Py_ssize_t from, double *to) {
    double bid = s->bid, ask = s->ask, bid_sz = s->bid_sz, ask_sz = s->ask_sz;
    switch (from) {
        case 0: *to = (bid + ask) * 0.5; return 0;
        case 1: *to = ask - bid; return 0;
        case 2:
            if (ratio(bid * ask_sz + ask * bid_sz, bid_sz + ask_sz, to) < 0) return -1;
            *to = *to - (bid + ask) * 0.5;
            return 0;
        case 3: return ratio(bid_sz - ask_sz, bid_sz + ask_sz, to);
        case BOOK_IMBALANCE:
            return ratio(s->depth_bid - s->depth_ask, s->depth_bid + s->depth_ask, to);
        default:
            PyErr_Format(PyExc_ValueError, "light mode has no feature at source %zd", from);
            return -1;
    }
}

/* buffer.py's compute() of either mode: trade features once a trade was seen (NaN before,
 * as the vector starts), mid features copied (history) or computed (light). */
static int compute(FeatureState *s) {
    double *out = (double *)s->out.buf;
    const double *full = s->full;
    for (Py_ssize_t j = 0; j < s->n_out; j++) {
        Py_ssize_t from = s->source[j];
        double value;
        if (from >= 0) {
            if (!s->light) {
                out[j] = full[from];
                continue;
            }
            if (light_value(s, from, &value) < 0) return -1;
        } else if (!s->n_trades) {
            value = NAN;
        } else if (from == SOURCE_FLOW) {
            if (ratio(s->flow_s, s->flow_v, &value) < 0) return -1;
        } else {
            value = (double)(s->ts_recv - s->last_trade_ts) / 1e9;
        }
        out[j] = value;
    }
    return 0;
}

static PyObject *FeatureState_compute(FeatureState *s, PyObject *Py_UNUSED(ignored)) {
    if (compute(s) < 0) return NULL;
    return Py_NewRef(s->out.obj); /* the vector itself, as the Python path returns it */
}

static PyObject *FeatureState_reset(FeatureState *s, PyObject *Py_UNUSED(ignored)) {
    clear_state(s);
    Py_RETURN_NONE;
}

static int parse_indices(PyObject *seq, const char *name, Py_ssize_t **to, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, name);
    if (fast == NULL) return -1;
    *n = PySequence_Fast_GET_SIZE(fast);
    *to = PyMem_New(Py_ssize_t, *n > 0 ? *n : 1);
    if (*to == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        (*to)[i] = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i), PyExc_OverflowError);
        if ((*to)[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static void FeatureState_dealloc(FeatureState *s) {
    if (s->out.obj != NULL) PyBuffer_Release(&s->out);
    PyMem_Free(s->horizons);
    PyMem_Free(s->source);
    PyMem_Free(s->logs);
    PyMem_Free(s->mids);
    PyMem_Free(s->full);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int check_layout(FeatureState *s) {
    if (s->n_horizons < 1 || s->window < 1) {
        PyErr_SetString(PyExc_ValueError, "FeatureState(): needs at least one horizon and window >= 1");
        return -1;
    }
    Py_ssize_t longest = s->window;
    for (Py_ssize_t k = 0; k < s->n_horizons; k++) {
        if (s->horizons[k] < 1) {
            PyErr_Format(PyExc_ValueError, "FeatureState(): horizon %zd is %zd; expected >= 1", k,
                         s->horizons[k]);
            return -1;
        }
        if (s->horizons[k] > longest) longest = s->horizons[k];
    }
    s->size = longest + 1;
    s->n_full = N_MID + (s->n_horizons > PACKED_RETURNS ? s->n_horizons : PACKED_RETURNS);
    for (Py_ssize_t j = 0; j < s->n_out; j++) {
        Py_ssize_t from = s->source[j];
        Py_ssize_t limit = s->light ? BOOK_IMBALANCE + 1 : s->n_full;
        if (from >= limit || (from < 0 && from != SOURCE_FLOW && from != SOURCE_SINCE)) {
            PyErr_Format(PyExc_ValueError, "FeatureState(): source %zd of slot %zd is out of range",
                         from, j);
            return -1;
        }
    }
    return 0;
}

static int FeatureState_init(FeatureState *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"vector", "source", "horizons", "window", "bollinger_k2",
                               "vol", "rsi", "norm", "fast", "slow", "signal", "flow", "light",
                               NULL};
    PyObject *vector, *source, *horizons;
    if (s->out.obj != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FeatureState() is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOndddddddd|p:FeatureState", keywords, &vector,
                                     &source, &horizons, &s->window, &s->k2, &s->a_vol,
                                     &s->a_rsi, &s->a_norm, &s->a_fast, &s->a_slow,
                                     &s->a_signal, &s->a_flow, &s->light))
        return -1;
    if (PyObject_GetBuffer(vector, &s->out, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) <
        0)
        return -1;
    if (s->out.itemsize != 8 || s->out.format == NULL ||
        s->out.format[strlen(s->out.format) - 1] != 'd') {
        PyErr_SetString(PyExc_TypeError, "FeatureState(): vector must be a float64 array");
        return -1;
    }
    s->n_out = s->out.len / 8;
    Py_ssize_t n_source;
    if (parse_indices(source, "FeatureState(): source must be a sequence of ints", &s->source,
                      &n_source) < 0 ||
        parse_indices(horizons, "FeatureState(): horizons must be a sequence of ints", &s->horizons,
                      &s->n_horizons) < 0)
        return -1;
    if (n_source != s->n_out) {
        PyErr_Format(PyExc_ValueError, "FeatureState(): %zd sources for a vector of %zd", n_source,
                     s->n_out);
        return -1;
    }
    if (check_layout(s) < 0) return -1;
    s->logs = PyMem_New(double, s->size);
    s->mids = PyMem_New(double, s->size);
    s->full = PyMem_New(double, s->n_full);
    if (s->logs == NULL || s->mids == NULL || s->full == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    clear_state(s);
    return 0;
}

static PyMethodDef FeatureState_methods[] = {
    {"on_quote", (PyCFunction)(void (*)(void))FeatureState_on_quote, METH_FASTCALL,
     "on_quote(ts_recv, bid_px, bid_sz, ask_px, ask_sz): a mid update."},
    {"on_book", (PyCFunction)(void (*)(void))FeatureState_on_book, METH_FASTCALL,
     "on_book(ts_recv, levels, row): a book event from a BookColumns bundle."},
    {"on_trade", (PyCFunction)(void (*)(void))FeatureState_on_trade, METH_FASTCALL,
     "on_trade(ts_recv, px, sz, side): a trade (px is not used)."},
    {"compute", (PyCFunction)FeatureState_compute, METH_NOARGS,
     "compute(): write the vector in place and return it."},
    {"reset", (PyCFunction)FeatureState_reset, METH_NOARGS,
     "reset(): every value NaN, every window empty (a new session)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef FeatureState_members[] = {
    {"ts_recv", T_LONGLONG, offsetof(FeatureState, ts_recv), READONLY, "latest event's ts_recv"},
    {"n_mid_updates", T_LONGLONG, offsetof(FeatureState, n_mid_updates), READONLY, "mid updates"},
    {"n_trades", T_LONGLONG, offsetof(FeatureState, n_trades), READONLY, "trades seen"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FeatureStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "simulator.features._native.FeatureState",
    .tp_doc = PyDoc_STR("The history-mode feature state (see history.py), compiled."),
    .tp_basicsize = sizeof(FeatureState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FeatureState_init,
    .tp_dealloc = (destructor)FeatureState_dealloc,
    .tp_methods = FeatureState_methods,
    .tp_members = FeatureState_members,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "simulator.features._native",
    .m_doc = "Compiled feature kernel (optional; the Python path is the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&FeatureStateType) < 0) return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) return NULL;
    if (PyModule_AddIntConstant(module, "N_MID", N_MID) < 0 ||
        PyModule_AddIntConstant(module, "SOURCE_FLOW", SOURCE_FLOW) < 0 ||
        PyModule_AddIntConstant(module, "SOURCE_SINCE", SOURCE_SINCE) < 0 ||
        PyModule_AddObjectRef(module, "FeatureState", (PyObject *)&FeatureStateType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
