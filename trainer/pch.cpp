// Translation unit that owns the torch precompiled header (ddpm_pch); other targets reuse it.
