/* Trains the spiral classifier of train.kn with plain SGD: generates the data set, initializes
 * the weights, calls the compiled `train_step` repeatedly (forward, gradient and update in one
 * call, in a preallocated workspace), prints the loss as it falls and the final accuracy.
 * Usage: train [steps] (default 3000). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

#define N TRAIN_STEP_X_DIM0

static unsigned long long state = 42;

/* A small deterministic generator (xorshift64*), uniform in [0, 1). */
static double uniform(void) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void init(float *w, int n, float scale) {
    for (int i = 0; i < n; i++) w[i] = scale * (float)(2.0 * uniform() - 1.0);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 3000;
    static float x[N * 2];
    static int32_t labels[N];
    /* Two spirals: class c's points wind around the origin, offset by half a turn. */
    for (int i = 0; i < N; i++) {
        int c = i % 2;
        double t = 0.25 + 3.0 * (double)(i / 2) / (N / 2);
        double angle = 3.5 * t + c * 3.14159265358979323846;
        x[2 * i] = (float)(t * cos(angle) + 0.05 * (uniform() - 0.5));
        x[2 * i + 1] = (float)(t * sin(angle) + 0.05 * (uniform() - 0.5));
        labels[i] = c;
    }
    static float p[2][TRAIN_STEP_W1_SIZE + TRAIN_STEP_B1_SIZE + TRAIN_STEP_W2_SIZE + TRAIN_STEP_B2_SIZE +
                      TRAIN_STEP_W3_SIZE + TRAIN_STEP_B3_SIZE];
    /* Parameter views into the current and next buffers. */
    float *w1[2], *b1[2], *w2[2], *b2[2], *w3[2], *b3[2];
    for (int k = 0; k < 2; k++) {
        w1[k] = p[k];
        b1[k] = w1[k] + TRAIN_STEP_W1_SIZE;
        w2[k] = b1[k] + TRAIN_STEP_B1_SIZE;
        b2[k] = w2[k] + TRAIN_STEP_W2_SIZE;
        w3[k] = b2[k] + TRAIN_STEP_B2_SIZE;
        b3[k] = w3[k] + TRAIN_STEP_W3_SIZE;
    }
    init(w1[0], TRAIN_STEP_W1_SIZE, 1.0f);
    init(w2[0], TRAIN_STEP_W2_SIZE, 0.3f);
    init(w3[0], TRAIN_STEP_W3_SIZE, 0.3f);
    float lr = 0.5f, loss = 0.0f, first = 0.0f;
    void *workspace = aligned_alloc(64, TRAIN_STEP_WORKSPACE_BYTES + 64);
    int cur = 0;
    for (int s = 0; s < steps; s++) {
        int next = 1 - cur;
        if (train_step(x, labels, w1[cur], b1[cur], w2[cur], b2[cur], w3[cur], b3[cur], &lr, &loss, w1[next],
                       b1[next], w2[next], b2[next], w3[next], b3[next], workspace) != 0) {
            fprintf(stderr, "train_step failed\n");
            return 1;
        }
        if (s == 0) first = loss;
        if (s % (steps / 10 > 0 ? steps / 10 : 1) == 0) printf("step %5d  loss %.4f\n", s, loss);
        cur = next;
    }
    float acc = 0.0f;
    if (train_accuracy(x, labels, w1[cur], b1[cur], w2[cur], b2[cur], w3[cur], b3[cur], &acc, NULL) != 0) return 1;
    printf("final loss %.4f (from %.4f), accuracy %.3f\n", loss, first, acc);
    free(workspace);
    return 0;
}
