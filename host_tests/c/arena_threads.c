/* Two models built with --arena caller, run as host_tests/test_caller_arena.py asks:
 *
 *   arena_threads threads INPUTS_A INPUTS_B OUT_A OUT_B
 *       THREADS_PER_MODEL threads per model, all at once, each on an arena of its own, each
 *       running every input of its model ROUNDS times; OUT_A (OUT_B) receives every thread's
 *       outputs of the last round, thread after thread.
 *   arena_threads shared INPUTS_A INPUTS_B OUT_A OUT_B
 *       one thread, one arena of the larger size filled with 0xA5 first: A's first input, B's
 *       first input, A's second, ... (the models time-share the buffer).
 *
 * Inputs files hold N inputs back to back (the same N for both models). Compiled with the
 * models' folders on the include path and
 *   -DMODEL_A=name -DMODEL_A_UPPER=NAME -DMODEL_A_HEADER='"name.h"' (and the same for B).
 * Exit status 0 on success; 1 if an invoke failed, 2 on a usage or file error. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include MODEL_A_HEADER
#include MODEL_B_HEADER

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define A(suffix) XCAT(MODEL_A, suffix)
#define B(suffix) XCAT(MODEL_B, suffix)
#define A_UPPER(suffix) XCAT(MODEL_A_UPPER, suffix)
#define B_UPPER(suffix) XCAT(MODEL_B_UPPER, suffix)

#define THREADS_PER_MODEL 2
#define ROUNDS 3
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN MAX(A_UPPER(_ARENA_ALIGN), B_UPPER(_ARENA_ALIGN))
/* At least one byte: a model without intermediate values has an arena size of 0. */
#define SHARED_SIZE MAX(MAX(A_UPPER(_ARENA_SIZE), B_UPPER(_ARENA_SIZE)), 1)

typedef struct {
    int model; /* 0: A, 1: B */
    long count;
    const void *inputs;
    void *outputs;
    int status;
} job;

static void *aligned_arena(size_t size)
{
    /* Rounded up to a multiple of the alignment, as aligned_alloc (C11) requires; POSIX's
     * posix_memalign is C99-friendly. */
    void *memory = NULL;
    const size_t rounded = (size + ALIGN - 1) / ALIGN * ALIGN;
    if (posix_memalign(&memory, ALIGN, rounded) != 0) {
        return NULL;
    }
    memset(memory, 0xA5, rounded); /* never rely on a zeroed arena */
    return memory;
}

static int invoke(int model, void *arena, const void *input, void *output)
{
    if (model == 0) {
        return A(_invoke_arena)(arena, (const A(_input_t) *)input, (A(_output_t) *)output);
    }
    return B(_invoke_arena)(arena, (const B(_input_t) *)input, (B(_output_t) *)output);
}

static size_t input_bytes(int model)
{
    return model == 0 ? A_UPPER(_INPUT_SIZE) * sizeof(A(_input_t))
                      : B_UPPER(_INPUT_SIZE) * sizeof(B(_input_t));
}

static size_t output_bytes(int model)
{
    return model == 0 ? A_UPPER(_OUTPUT_SIZE) * sizeof(A(_output_t))
                      : B_UPPER(_OUTPUT_SIZE) * sizeof(B(_output_t));
}

static void *run_job(void *argument)
{
    job *work = argument;
    void *arena = aligned_arena(work->model == 0 ? MAX(A_UPPER(_ARENA_SIZE), 1)
                                                 : MAX(B_UPPER(_ARENA_SIZE), 1));
    if (arena == NULL) {
        work->status = -1;
        return NULL;
    }
    for (int round = 0; round < ROUNDS && work->status == 0; round++) {
        for (long i = 0; i < work->count && work->status == 0; i++) {
            work->status = invoke(work->model, arena,
                                  (const char *)work->inputs + i * input_bytes(work->model),
                                  (char *)work->outputs + i * output_bytes(work->model));
        }
    }
    free(arena);
    return NULL;
}

static void *read_file(const char *path, long *size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL || fseek(file, 0, SEEK_END) != 0) {
        return NULL;
    }
    *size = ftell(file);
    rewind(file);
    void *data = malloc(*size > 0 ? (size_t)*size : 1);
    if (data == NULL || fread(data, 1, (size_t)*size, file) != (size_t)*size) {
        return NULL;
    }
    fclose(file);
    return data;
}

static int write_file(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL || fwrite(data, 1, size, file) != size) {
        return 2;
    }
    return fclose(file) == 0 ? 0 : 2;
}

static int run_threads(const void *inputs[2], long count, char *outputs[2])
{
    pthread_t threads[2 * THREADS_PER_MODEL];
    job jobs[2 * THREADS_PER_MODEL];
    for (int t = 0; t < 2 * THREADS_PER_MODEL; t++) {
        const int model = t % 2; /* A, B, A, B: both models run at once too */
        const int instance = t / 2;
        jobs[t] = (job){model, count, inputs[model],
                        outputs[model] + (size_t)instance * count * output_bytes(model), 0};
        if (pthread_create(&threads[t], NULL, run_job, &jobs[t]) != 0) {
            return 2;
        }
    }
    int status = 0;
    for (int t = 0; t < 2 * THREADS_PER_MODEL; t++) {
        pthread_join(threads[t], NULL);
        if (jobs[t].status != 0) {
            fprintf(stderr, "thread %d: invoke returned %d\n", t, jobs[t].status);
            status = 1;
        }
    }
    return status;
}

static int run_shared(const void *inputs[2], long count, char *outputs[2])
{
    void *arena = aligned_arena(SHARED_SIZE);
    if (arena == NULL) {
        return 2;
    }
    int status = 0;
    for (long i = 0; i < count && status == 0; i++) {
        for (int model = 0; model < 2 && status == 0; model++) {
            status = invoke(model, arena, (const char *)inputs[model] + i * input_bytes(model),
                            outputs[model] + i * output_bytes(model));
        }
    }
    free(arena);
    if (status != 0) {
        fprintf(stderr, "invoke returned %d\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "threads") != 0 && strcmp(argv[1], "shared") != 0)) {
        fprintf(stderr, "usage: %s threads|shared INPUTS_A INPUTS_B OUT_A OUT_B\n", argv[0]);
        return 2;
    }
    long sizes[2];
    const void *inputs[2] = {read_file(argv[2], &sizes[0]), read_file(argv[3], &sizes[1])};
    if (inputs[0] == NULL || inputs[1] == NULL) {
        fprintf(stderr, "cannot read the inputs\n");
        return 2;
    }
    const long count = sizes[0] / (long)input_bytes(0);
    if (count == 0 || sizes[0] != count * (long)input_bytes(0)
            || sizes[1] != count * (long)input_bytes(1)) {
        fprintf(stderr, "the inputs files must hold the same number of inputs\n");
        return 2;
    }
    const int threads = strcmp(argv[1], "threads") == 0;
    const size_t copies = threads ? THREADS_PER_MODEL : 1;
    char *outputs[2] = {calloc(copies * count, output_bytes(0)),
                        calloc(copies * count, output_bytes(1))};
    if (outputs[0] == NULL || outputs[1] == NULL) {
        return 2;
    }
    const int status = threads ? run_threads(inputs, count, outputs)
                               : run_shared(inputs, count, outputs);
    if (status != 0) {
        return status;
    }
    if (write_file(argv[4], outputs[0], copies * count * output_bytes(0)) != 0
            || write_file(argv[5], outputs[1], copies * count * output_bytes(1)) != 0) {
        fprintf(stderr, "cannot write the outputs\n");
        return 2;
    }
    free(outputs[0]);
    free(outputs[1]);
    free((void *)inputs[0]);
    free((void *)inputs[1]);
    return 0;
}
