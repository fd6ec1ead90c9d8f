/* Trains the convolutional network of cnn.kn with plain SGD on images drawn afresh for every
 * step: 8x8 images of one bar, horizontal (class 0) or vertical (class 1), at a random row or
 * column, with noise. Calls the compiled `cnn_step` (forward, gradient and update in one call,
 * in a preallocated workspace), prints the loss as it falls, and the accuracy on images the
 * network has not seen. Usage: cnn [steps] (default 400). */
#include <stdio.h>
#include <stdlib.h>

#include "cnn.h"

#define N 64
#define SIDE 8

static unsigned long long state = 7;

/* A small deterministic generator (xorshift64*), uniform in [0, 1). */
static double uniform(void) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* A batch of images, half with horizontal bars and half with vertical ones. */
static void draw(float *x, int32_t *labels) {
    for (int i = 0; i < N; i++) {
        int vertical = i % 2, at = (int)(uniform() * SIDE);
        for (int r = 0; r < SIDE; r++) {
            for (int c = 0; c < SIDE; c++) {
                float bar = (vertical ? c : r) == at ? 1.0f : 0.0f;
                x[(i * SIDE + r) * SIDE + c] = bar + (float)(0.4 * (uniform() - 0.5));
            }
        }
        labels[i] = vertical;
    }
}

static void init(float *w, int n, float scale) {
    for (int i = 0; i < n; i++) w[i] = scale * (float)(2.0 * uniform() - 1.0);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 400;
    static float x[CNN_STEP_X_SIZE];
    static int32_t labels[CNN_STEP_LABELS_SIZE];
    enum { SIZE = CNN_STEP_K1_SIZE + CNN_STEP_C1_SIZE + CNN_STEP_K2_SIZE + CNN_STEP_C2_SIZE + CNN_STEP_W_SIZE +
                  CNN_STEP_B_SIZE };
    static float p[2][SIZE];
    /* Parameter views into the current and next buffers. */
    float *k1[2], *c1[2], *k2[2], *c2[2], *w[2], *b[2];
    for (int k = 0; k < 2; k++) {
        k1[k] = p[k];
        c1[k] = k1[k] + CNN_STEP_K1_SIZE;
        k2[k] = c1[k] + CNN_STEP_C1_SIZE;
        c2[k] = k2[k] + CNN_STEP_K2_SIZE;
        w[k] = c2[k] + CNN_STEP_C2_SIZE;
        b[k] = w[k] + CNN_STEP_W_SIZE;
    }
    init(k1[0], CNN_STEP_K1_SIZE, 0.5f);
    init(k2[0], CNN_STEP_K2_SIZE, 0.2f);
    init(w[0], CNN_STEP_W_SIZE, 0.5f);
    float lr = 0.2f, loss = 0.0f, first = 0.0f;
    void *workspace = aligned_alloc(64, CNN_STEP_WORKSPACE_BYTES + 64);
    int cur = 0;
    for (int s = 0; s < steps; s++) {
        int next = 1 - cur;
        draw(x, labels);
        if (cnn_step(x, labels, k1[cur], c1[cur], k2[cur], c2[cur], w[cur], b[cur], &lr, &loss, k1[next], c1[next],
                     k2[next], c2[next], w[next], b[next], workspace) != 0) {
            fprintf(stderr, "cnn_step failed\n");
            return 1;
        }
        if (s == 0) first = loss;
        if (s % (steps / 10 > 0 ? steps / 10 : 1) == 0) printf("step %5d  loss %.4f\n", s, loss);
        cur = next;
    }
    draw(x, labels);
    float acc = 0.0f;
    if (cnn_accuracy(x, labels, k1[cur], c1[cur], k2[cur], c2[cur], w[cur], b[cur], &acc, NULL) != 0) return 1;
    printf("final loss %.4f (from %.4f), accuracy on new images %.3f\n", loss, first, acc);
    free(workspace);
    return 0;
}
