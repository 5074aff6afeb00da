/* job: placeholder until the module lands. */
#include "job.h"
