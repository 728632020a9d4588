/* The per-prediction glue of the model runners, compiled (optional: onnx_runner.py and rule.py
 * hold the Python twins, which give the same bits; tests compare them).
 *
 * Features are float64 everywhere; a model takes float32. Done in Python, the cast into the
 * model's preallocated input (`row[...] = features`) goes through numpy's generic assignment
 * (~1,200 instructions for 16 values), the copy of the float32 outputs into the runner's float64
 * output vector through memoryviews, and predict() itself is a Python frame. Here one C call
 * does all of it around the model call, allocating nothing:
 *
 *   OnnxStep(input, run, output, out).predict(features, event_index) -> out
 *       input[i] = (float)features[i]; run(); out[j] = (double)output[j]
 *   RuleStep(feature_index, scale, out, signal).predict(features, event_index) -> out
 *       RuleRunner's arithmetic: x = features[feature_index] * scale, p from x
 *
 * `features` is bound by identity: the feature stage hands the same vector on every event, so
 * its buffer is acquired once and again only when another array comes. The double -> float
 * conversion is C's, as numpy's cast (round to nearest; too large -> inf). Built with
 * -ffp-contract=off like the feature kernel: no fused multiply-add.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* A C-contiguous buffer of `itemsize` bytes per item with format letter `letter`. */
static int get_vector(PyObject *obj, Py_buffer *view, int writable, char letter,
                      Py_ssize_t itemsize, const char *what) {
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    const char *type = letter == 'd' ? "float64" : "float32";
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear(); /* numpy's own message ("not C-contiguous"...) names no argument */
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous%s %s array; found %s", what,
                     writable ? " writable" : "", type, Py_TYPE(obj)->tp_name);
        return -1;
    }
    const char *format = view->format;
    if (view->itemsize != itemsize || format == NULL || format[strlen(format) - 1] != letter) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous%s %s array; found format '%s'",
                     what, writable ? " writable" : "", type, format == NULL ? "?" : format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The feature vector of the last call: held (buffer and reference) until another one comes. */
typedef struct {
    PyObject *obj;
    Py_buffer view;
} Source;

static int bind_source(Source *source, PyObject *features, Py_ssize_t n, const char *who) {
    Py_buffer view;
    if (get_vector(features, &view, 0, 'd', 8, "features") < 0) return -1;
    if (view.len / 8 != n) {
        PyErr_Format(PyExc_ValueError, "%s: features has %zd values; the model takes %zd", who,
                     view.len / 8, n);
        PyBuffer_Release(&view);
        return -1;
    }
    if (source->obj != NULL) PyBuffer_Release(&source->view);
    Py_XSETREF(source->obj, Py_NewRef(features));
    source->view = view;
    return 0;
}

static void release_source(Source *source) {
    if (source->obj != NULL) {
        PyBuffer_Release(&source->view);
        Py_CLEAR(source->obj);
    }
}

static int check_args(Py_ssize_t nargs, const char *who) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s.predict(features, event_index) takes 2 arguments (%zd given)",
                     who, nargs);
        return -1;
    }
    return 0;
}

/* ---- OnnxStep ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Source source;
    Py_buffer input, output, out; /* float32 model input, float32 model outputs, float64 out */
    PyObject *out_obj, *run;
    Py_ssize_t n_in, n_out;
} OnnxStep;

static PyObject *OnnxStep_predict(OnnxStep *s, PyObject *const *args, Py_ssize_t nargs) {
    if (check_args(nargs, "OnnxStep") < 0) return NULL;
    if (args[0] != s->source.obj && bind_source(&s->source, args[0], s->n_in, "OnnxStep") < 0)
        return NULL;
    const double *x = (const double *)s->source.view.buf;
    float *in = (float *)s->input.buf;
    for (Py_ssize_t i = 0; i < s->n_in; i++) in[i] = (float)x[i];
    PyObject *done = PyObject_CallNoArgs(s->run);
    if (done == NULL) return NULL;
    Py_DECREF(done);
    const float *y = (const float *)s->output.buf;
    double *out = (double *)s->out.buf;
    for (Py_ssize_t j = 0; j < s->n_out; j++) out[j] = (double)y[j];
    return Py_NewRef(s->out_obj);
}

static int OnnxStep_init(OnnxStep *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"input", "run", "output", "out", NULL};
    PyObject *input, *run, *output, *out;
    if (s->run != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "OnnxStep() is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO:OnnxStep", keywords, &input, &run,
                                     &output, &out))
        return -1;
    if (!PyCallable_Check(run)) {
        PyErr_SetString(PyExc_TypeError, "OnnxStep(): run must be callable");
        return -1;
    }
    if (get_vector(input, &s->input, 1, 'f', 4, "OnnxStep(): input") < 0) return -1;
    if (get_vector(output, &s->output, 0, 'f', 4, "OnnxStep(): output") < 0) return -1;
    if (get_vector(out, &s->out, 1, 'd', 8, "OnnxStep(): out") < 0) return -1;
    s->n_in = s->input.len / 4;
    s->n_out = s->output.len / 4;
    if (s->out.len / 8 != s->n_out) {
        PyErr_Format(PyExc_ValueError, "OnnxStep(): out has %zd values; output has %zd",
                     s->out.len / 8, s->n_out);
        return -1;
    }
    s->out_obj = Py_NewRef(out);
    s->run = Py_NewRef(run);
    return 0;
}

static void OnnxStep_dealloc(OnnxStep *s) {
    release_source(&s->source);
    if (s->input.obj != NULL) PyBuffer_Release(&s->input);
    if (s->output.obj != NULL) PyBuffer_Release(&s->output);
    if (s->out.obj != NULL) PyBuffer_Release(&s->out);
    Py_XDECREF(s->out_obj);
    Py_XDECREF(s->run);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef OnnxStep_methods[] = {
    {"predict", (PyCFunction)(void (*)(void))OnnxStep_predict, METH_FASTCALL,
     "predict(features, event_index): cast in, run the model, cast out; returns out."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject OnnxStepType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "simulator.models._step.OnnxStep",
    .tp_doc = PyDoc_STR("OnnxRunner.predict around the model call, compiled."),
    .tp_basicsize = sizeof(OnnxStep),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)OnnxStep_init,
    .tp_dealloc = (destructor)OnnxStep_dealloc,
    .tp_methods = OnnxStep_methods,
};

/* ---- RuleStep ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Source source;
    Py_buffer out;
    PyObject *out_obj;
    Py_ssize_t index;
    double scale;
    int signal; /* write the signal to out[1] (RuleRunner) or only p (a breaker's fallback) */
} RuleStep;

static PyObject *RuleStep_predict(RuleStep *s, PyObject *const *args, Py_ssize_t nargs) {
    if (check_args(nargs, "RuleStep") < 0) return NULL;
    if (args[0] != s->source.obj) {
        Py_buffer view;
        if (get_vector(args[0], &view, 0, 'd', 8, "features") < 0) return NULL;
        Py_ssize_t n = view.len / 8;
        PyBuffer_Release(&view);
        if (s->index >= n) {
            PyErr_Format(PyExc_IndexError, "rule: feature_index %zd is out of range for %zd features",
                         s->index, n);
            return NULL;
        }
        if (bind_source(&s->source, args[0], n, "RuleStep") < 0) return NULL;
    }
    double x = ((const double *)s->source.view.buf)[s->index] * s->scale;
    double p;
    if (x != x)
        p = 0.5;
    else if (x >= 1.0)
        p = 1.0;
    else if (x <= -1.0)
        p = 0.0;
    else
        p = (1.0 + x) * 0.5;
    double *out = (double *)s->out.buf;
    out[0] = p;
    if (s->signal) out[1] = x;
    return Py_NewRef(s->out_obj);
}

static int RuleStep_init(RuleStep *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"feature_index", "scale", "out", "signal", NULL};
    PyObject *out;
    if (s->out_obj != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RuleStep() is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ndOp:RuleStep", keywords, &s->index,
                                     &s->scale, &out, &s->signal))
        return -1;
    if (s->index < 0) {
        PyErr_SetString(PyExc_ValueError, "RuleStep(): feature_index must be >= 0");
        return -1;
    }
    if (get_vector(out, &s->out, 1, 'd', 8, "RuleStep(): out") < 0) return -1;
    if (s->out.len / 8 < (s->signal ? 2 : 1)) {
        PyErr_SetString(PyExc_ValueError, "RuleStep(): out is too short");
        return -1;
    }
    s->out_obj = Py_NewRef(out);
    return 0;
}

static void RuleStep_dealloc(RuleStep *s) {
    release_source(&s->source);
    if (s->out.obj != NULL) PyBuffer_Release(&s->out);
    Py_XDECREF(s->out_obj);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef RuleStep_methods[] = {
    {"predict", (PyCFunction)(void (*)(void))RuleStep_predict, METH_FASTCALL,
     "predict(features, event_index): [p, signal] (or p alone) into out; returns out."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RuleStepType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "simulator.models._step.RuleStep",
    .tp_doc = PyDoc_STR("RuleRunner.predict, compiled."),
    .tp_basicsize = sizeof(RuleStep),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RuleStep_init,
    .tp_dealloc = (destructor)RuleStep_dealloc,
    .tp_methods = RuleStep_methods,
};

static struct PyModuleDef step_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "simulator.models._step",
    .m_doc = "Compiled per-prediction glue of the model runners (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__step(void) {
    if (PyType_Ready(&OnnxStepType) < 0 || PyType_Ready(&RuleStepType) < 0) return NULL;
    PyObject *module = PyModule_Create(&step_module);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "OnnxStep", (PyObject *)&OnnxStepType) < 0 ||
        PyModule_AddObjectRef(module, "RuleStep", (PyObject *)&RuleStepType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
