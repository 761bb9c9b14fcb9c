/* Test driver of the C API (written in C: the header must compile as C).  Used by
 * tests/test_cpp.py to compare the C++ library with the Python runtime.
 *
 *   ldmind_probe MODE key=value ...
 *   MODE upscale | latents | generate | threads | repeat | plan | inspect
 *   keys: dir in(raw RGB file) w h scale size(WxH) steps eta fidelity seed n bp sampler schedule
 *         lt lo tile latent(HxW for generate) out(raw output file) threads count backend
 *         precision (ldmind_open_ex)
 *   plan: print the backend ("backend NAME"), each graph's ("graph NAME BACKEND") and the
 *         reason ("reason TEXT"), one per line, and exit
 *         progress(1: print each event) cancel_after(K: cancel at the K-th event)
 *   inspect: the same from ldmind_inspect (dir, verify=1), then try an upscale (a generate) on
 *         it and print its status and message ("run STATUS MESSAGE")
 * Exit 0 on success; on failure the status code + 10 and the message on stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldmind.h"

static const char *arg(int argc, char **argv, const char *key, const char *def) {
    size_t n = strlen(key);
    for (int i = 2; i < argc; ++i)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return def;
}

static int fail(ldmind_status s) {
    fprintf(stderr, "status %d: %s\n", (int)s, ldmind_last_error());
    return 10 + (int)s;
}

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *size = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static int write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) return 1;
    return fclose(f) != 0;
}

/* progress=1: print every event; cancel_after=K: ask to stop at the K-th event */
typedef struct watch { int print, cancel_after, seen; } watch;

static int on_progress(const char *stage, int done, int total, void *user) {
    watch *w = user;
    w->seen++;
    if (w->print) printf("progress %s %d %d\n", stage, done, total);
    return w->cancel_after > 0 && w->seen >= w->cancel_after;
}

typedef struct job {
    ldmind_pipeline *p;
    const unsigned char *rgb;
    int w, h, ow, oh;
    double scale;
    ldmind_options o;
    unsigned char *out;
    ldmind_status status;
} job;

static void *run_job(void *arg_) {
    job *j = arg_;
    j->status = ldmind_upscale(j->p, j->rgb, j->w, j->h, j->scale, j->ow, j->oh, &j->o, j->out);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ldmind_probe MODE key=value ...\n");
        return 2;
    }
    const char *mode = argv[1];
    ldmind_options o;
    if (strcmp(mode, "generate") == 0) ldmind_generate_options_init(&o);   /* the task's defaults, as Python's */
    else ldmind_options_init(&o);
    o.steps = atoi(arg(argc, argv, "steps", "10"));
    o.eta = atof(arg(argc, argv, "eta", "1"));
    const char *fidelity = arg(argc, argv, "fidelity", NULL);     /* none: the task's default */
    if (fidelity) o.fidelity = atof(fidelity);
    o.seed = atoll(arg(argc, argv, "seed", "0"));
    o.num_samples = atoi(arg(argc, argv, "n", "1"));
    o.backproject = atoi(arg(argc, argv, "bp", "10"));
    o.sampler = arg(argc, argv, "sampler", "dpm++2m");
    o.schedule = arg(argc, argv, "schedule", "full");
    o.tile = atoi(arg(argc, argv, "tile", "0"));
    o.latent_tile = atoi(arg(argc, argv, "lt", "-1"));
    o.latent_overlap = atoi(arg(argc, argv, "lo", "-1"));

    watch wt = {atoi(arg(argc, argv, "progress", "0")), atoi(arg(argc, argv, "cancel_after", "0")), 0};
    if (wt.print || wt.cancel_after) {
        o.progress = on_progress;
        o.user = &wt;
    }

    ldmind_pipeline *p = NULL;
    ldmind_status s;
    if (strcmp(mode, "inspect") == 0) {
        static const char *const graphs[] = {"encoder", "unet_step", "decoder", "liif"};
        static unsigned char px[3 * 16 * 16], big[3 * 32 * 32];
        s = ldmind_inspect(arg(argc, argv, "dir", "engines/small"), atoi(arg(argc, argv, "verify", "1")), &p);
        if (s != LDMIND_OK) return fail(s);
        printf("backend %s\n", ldmind_backend(p));
        for (int k = 0; k < 4; ++k)
            if (*ldmind_graph_backend(p, graphs[k])) printf("graph %s %s\n", graphs[k], ldmind_graph_backend(p, graphs[k]));
        printf("reason %s\n", ldmind_backend_reason(p));
        s = ldmind_is_conditional(p) ? ldmind_upscale(p, px, 16, 16, 2.0, 0, 0, &o, big)
                                     : ldmind_generate(p, 32, 32, 0, 0, &o, big);
        printf("run %d %s\n", (int)s, ldmind_last_error());
        ldmind_close(p);
        return 0;
    }
    s = ldmind_open_ex(arg(argc, argv, "dir", "engines/small"), arg(argc, argv, "backend", "cpu"),
                                     arg(argc, argv, "precision", "auto"), atoi(arg(argc, argv, "threads_per_graph", "0")),
                                     1, &p);
    if (s != LDMIND_OK) return fail(s);
    if (strcmp(mode, "plan") == 0) {
        static const char *const graphs[] = {"encoder", "unet_step", "decoder", "liif"};
        printf("backend %s\n", ldmind_backend(p));
        for (int k = 0; k < 4; ++k)
            if (*ldmind_graph_backend(p, graphs[k])) printf("graph %s %s\n", graphs[k], ldmind_graph_backend(p, graphs[k]));
        printf("reason %s\n", ldmind_backend_reason(p));
        ldmind_close(p);
        return 0;
    }

    int ow = 0, oh = 0;
    const char *size = arg(argc, argv, "size", NULL);
    if (size) sscanf(size, "%dx%d", &ow, &oh);
    double scale = atof(arg(argc, argv, "scale", "0"));
    const char *out_path = arg(argc, argv, "out", NULL);
    int rc = 0;

    if (strcmp(mode, "generate") == 0) {
        int lh = 0, lw = 0;
        const char *lat = arg(argc, argv, "latent", NULL);
        if (lat) sscanf(lat, "%dx%d", &lh, &lw);
        size_t n = (size_t)o.num_samples * (size_t)ow * (size_t)oh * 3;
        unsigned char *out = malloc(n ? n : 1);
        s = ldmind_generate(p, ow, oh, lh, lw, &o, out);
        if (s != LDMIND_OK) rc = fail(s);
        else if (out_path) rc = write_all(out_path, out, n);
        free(out);
        ldmind_close(p);
        return rc;
    }

    size_t got = 0;
    int w = atoi(arg(argc, argv, "w", "0")), h = atoi(arg(argc, argv, "h", "0"));
    unsigned char *rgb = read_all(arg(argc, argv, "in", ""), &got);
    if (!rgb || got != (size_t)w * (size_t)h * 3) {
        fprintf(stderr, "in= must be a raw RGB file of w*h*3 bytes\n");
        return 2;
    }
    if (strcmp(mode, "latents") == 0) {
        int c, lh, lw;
        s = ldmind_upscale_latent_shape(p, w, h, &c, &lh, &lw);
        if (s != LDMIND_OK) return fail(s);
        size_t n = (size_t)o.num_samples * (size_t)c * (size_t)lh * (size_t)lw;
        float *z = malloc(n * sizeof(float));
        s = ldmind_upscale_latents(p, rgb, w, h, &o, z);
        if (s != LDMIND_OK) rc = fail(s);
        else if (out_path) rc = write_all(out_path, z, n * sizeof(float));
        free(z);
    } else {
        int H, W;
        s = ldmind_output_size(p, w, h, scale, ow, oh, &H, &W);
        if (s != LDMIND_OK) return fail(s);
        size_t n = (size_t)o.num_samples * (size_t)H * (size_t)W * 3;
        if (strcmp(mode, "upscale") == 0 || strcmp(mode, "repeat") == 0) {
            int times = strcmp(mode, "repeat") == 0 ? atoi(arg(argc, argv, "count", "20")) : 1;
            unsigned char *out = malloc(n);
            for (int k = 0; k < times && rc == 0; ++k) {
                s = ldmind_upscale(p, rgb, w, h, scale, ow, oh, &o, out);
                if (s != LDMIND_OK) rc = fail(s);
            }
            if (rc == 0 && out_path) rc = write_all(out_path, out, n);
            free(out);
        } else if (strcmp(mode, "threads") == 0) {
            /* serial results first, then every job at once on the one pipeline */
            int k = atoi(arg(argc, argv, "threads", "8"));
            job *jobs = calloc((size_t)k, sizeof(job));
            unsigned char **serial = calloc((size_t)k, sizeof(unsigned char *));
            pthread_t *tid = calloc((size_t)k, sizeof(pthread_t));
            for (int i = 0; i < k; ++i) {
                jobs[i] = (job){p, rgb, w, h, ow, oh, scale, o, malloc(n), LDMIND_OK};
                jobs[i].o.seed = o.seed + i;
                serial[i] = malloc(n);
                s = ldmind_upscale(p, rgb, w, h, scale, ow, oh, &jobs[i].o, serial[i]);
                if (s != LDMIND_OK) return fail(s);
            }
            for (int i = 0; i < k; ++i) pthread_create(&tid[i], NULL, run_job, &jobs[i]);
            for (int i = 0; i < k; ++i) pthread_join(tid[i], NULL);
            int differ = 0;
            for (int i = 0; i < k; ++i) {
                if (jobs[i].status != LDMIND_OK) rc = fail(jobs[i].status);
                else if (memcmp(jobs[i].out, serial[i], n) != 0) differ++;
                free(jobs[i].out);
                free(serial[i]);
            }
            printf("%d threads: %d differ from the serial results\n", k, differ);
            if (differ) rc = 1;
            free(jobs);
            free(serial);
            free(tid);
        } else {
            fprintf(stderr, "unknown mode %s\n", mode);
            rc = 2;
        }
    }
    free(rgb);
    ldmind_close(p);
    return rc;
}
