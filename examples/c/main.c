/* Links the object kiln compiled from examples/mlp.kn, fills its inputs deterministically,
 * calls both exported functions and prints the results. With a directory argument it also
 * writes every input and output there as raw little-endian files, so that `kiln eval` can
 * check the compiled results against kiln's reference interpreter. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mlp.h"

static const char *dump_dir = NULL;

/* Deterministic inputs: a smooth pattern in [-scale, scale] that differs per argument. */
static void fill(float *x, int n, int seed, float scale) {
    for (int i = 0; i < n; i++) x[i] = scale * (float)sin(0.37 * i + 1.7 * seed);
}

static void dump(const char *name, const void *data, size_t bytes) {
    if (!dump_dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dump_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc > 1) dump_dir = argv[1];
    static float x[MLP_LOSS_X_SIZE], w1[MLP_LOSS_W1_SIZE], b1[MLP_LOSS_B1_SIZE];
    static float w2[MLP_LOSS_W2_SIZE], b2[MLP_LOSS_B2_SIZE];
    static int32_t labels[MLP_LOSS_LABELS_SIZE];
    fill(x, MLP_LOSS_X_SIZE, 1, 1.0f);
    fill(w1, MLP_LOSS_W1_SIZE, 2, 0.3f);
    fill(b1, MLP_LOSS_B1_SIZE, 3, 0.1f);
    fill(w2, MLP_LOSS_W2_SIZE, 4, 0.3f);
    fill(b2, MLP_LOSS_B2_SIZE, 5, 0.1f);
    for (int i = 0; i < MLP_LOSS_LABELS_SIZE; i++) labels[i] = (i * 7) % MLP_LOSS_W2_DIM1;

    /* The loss runs in a workspace of the exact size the compiler planned, so the call does
     * not allocate; predict gets NULL and allocates its own. */
    static unsigned char workspace[MLP_LOSS_WORKSPACE_BYTES + 1] __attribute__((aligned(64)));
    float loss;
    if (mlp_loss(x, labels, w1, b1, w2, b2, &loss, workspace) != 0) {
        fprintf(stderr, "mlp_loss failed\n");
        return 1;
    }
    static float probs[MLP_PREDICT_OUT0_SIZE], best[MLP_PREDICT_OUT1_SIZE];
    if (mlp_predict(x, w1, b1, w2, b2, probs, best, NULL) != 0) {
        fprintf(stderr, "mlp_predict failed\n");
        return 1;
    }
    /* A NULL argument is refused with status 1, not a crash. */
    if (mlp_loss(NULL, labels, w1, b1, w2, b2, &loss, workspace) != 1) {
        fprintf(stderr, "mlp_loss accepted a NULL pointer\n");
        return 1;
    }

    printf("loss = %.6f (workspace: %d bytes)\n", loss, MLP_LOSS_WORKSPACE_BYTES);
    printf("probabilities of example 0:");
    for (int j = 0; j < MLP_PREDICT_OUT0_DIM1; j++) printf(" %.4f", probs[j]);
    printf("\nlargest probability per example:");
    for (int i = 0; i < MLP_PREDICT_OUT1_SIZE; i++) printf(" %.3f", best[i]);
    printf("\n");

    dump("x", x, sizeof x);
    dump("labels", labels, sizeof labels);
    dump("w1", w1, sizeof w1);
    dump("b1", b1, sizeof b1);
    dump("w2", w2, sizeof w2);
    dump("b2", b2, sizeof b2);
    dump("loss", &loss, sizeof loss);
    dump("probs", probs, sizeof probs);
    dump("best", best, sizeof best);
    return 0;
}
