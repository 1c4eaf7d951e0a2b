using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>intervene</c>: one input, a clean and an edited pass (head ablation, attention knockout, activation patching); how log p(target) moves.</summary>
public sealed class InterveneCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "Hugging Face checkpoint folder (LlavaForConditionalGeneration or LlamaForCausalLM)", Required: true),
        new("image", "FILE", "PNG, JPEG or WebP image (omit for a text-only prompt)"),
        new("prompt", "TEXT", "prompt; a vision prompt contains one <image>", Required: true),
        new("target", "TOKEN", "answer token to measure: an id, a vocabulary piece or a one-token word (default: the clean pass's argmax)"),
        .. InterventionRequest.Options.Select(o => new CommandLine.OptionSpec(o.Name, o.ValueName, o.Help)),
        new("json", null, "print one JSON object (the fields of intervene.json) instead of the summary"),
        new("out", "DIR", "also write intervene.json and intervene.png into this folder"),
        .. DeviceOptions.Specs,
    ];

    public static string Description { get; } = """
        Does the answer need these components? Runs the input clean, then again with the edits
        (docs/METHOD.md, "Interventions"), and reports the target's log-probability at the last
        position in both passes (real model, no frozen scale), delta = edited - clean, and whether
        the edited argmax is no longer the target (flipped).

        Edits (any combination, one edited pass):
          --ablate-heads L.H,..  [--ablation zero|mean]   heads' outputs at blocks.{l}.attn.hook_z
          --knockout Q:K [--layers A-B|L,..]              pre-softmax scores from queries Q to keys K
                                                          set to -inf (groups: last, image, text, all, i,j,..)
          --patch-image FILE and/or --patch-prompt TEXT   residual stream at blocks.{L}.hook_resid_pre,
            --patch-layer L|all --patch-positions P       positions P, taken from the source input's
                                                          clean pass (same number of tokens); with all,
                                                          one pass per layer and a per-layer curve

        Order within a layer: patch (the layer's input), then knockout (attention scores), then
        ablation (head outputs); a patch at layer l overrides at its positions what earlier
        layers' edits did there.

        JSON fields: target_id, target_token, clean_logprob, edit_logprob, delta, flipped,
        clean_argmax, edit_argmax, edit_top2_gap, clean_top5 and edit_top5 [{id, token, prob}],
        compared_tokens [{id, token, clean_prob, edit_prob}], edits [{kind, hook, layers, ...}],
        seq_len; with --patch-layer all also patched_layer (the layer the edit_* fields describe:
        largest |delta|) and curve [{layer, edit_logprob, delta, edit_argmax, flipped}].
        --out writes intervene.json and intervene.png (clean vs edited probabilities of the top
        tokens; with --patch-layer all the delta per layer), all or nothing.
        """;

    public static string Examples { get; } = """
          ./llavamech intervene --model tests/fixtures/tiny-llava-mha --image tests/fixtures/tiny-llava-mha/red_circle.png \
              --prompt $'USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is' \
              --ablate-heads 1.2,2.1,3.1 --ablation mean
          ./llavamech intervene ... --knockout last:image --layers 0-1 --json
          ./llavamech intervene ... --patch-image tests/fixtures/tiny-llava-mha/wide_scene.png --patch-layer all \
              --patch-positions image --out out/patch
        """;

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        var request = InterventionRequest.Parse(cl.Get);
        using var model = LoadedModel.Load(cl.Require("model"), options);
        int? target = TargetResolver.Resolve(cl.Get("target"), model.Tokenizer, model.Config.Text.VocabSize);
        InterventionResult result;
        using (NewDisposeScope())
            result = InterventionRunner.Run(model, model.Prepare(cl.Require("prompt"), cl.Get("image")), request, target);
        if (cl.Get("out") is { } outDir) InterventionRunner.Write(result, outDir);
        if (cl.Flag("json")) { Console.WriteLine(Json.Serialize(result)); return 0; }
        PrintSummary(result, cl.Get("out"));
        return 0;
    }

    private static string Trunc(string s, int n) => (s.Length <= n ? s : s[..(n - 1)] + "…").Replace("\n", "\\n");

    private static void PrintSummary(InterventionResult r, string? outDir)
    {
        foreach (var e in r.Edits)
            Console.WriteLine($"edit          {e.Kind} at {e.Hook}, layers {(e.EveryLayer == true ? "each in turn" : string.Join(",", e.Layers))}" + e.Kind switch
            {
                "ablate_heads" => $": {e.Mode} {string.Join(",", e.Heads!.Select(h => $"L{h[0]}H{h[1]}"))}",
                "knockout" => $": {e.Queries} -> {e.Keys} ({e.KnockedPairs} query-key pairs per head and layer)",
                _ => $": {e.Positions} ({e.PatchedPositions!.Length} positions) from the source image '{e.SourceImage ?? "none"}', prompt '{Trunc(e.SourcePrompt!, 40)}'",
            });
        Console.WriteLine($"target        '{r.TargetToken}' (id {r.TargetId})");
        Console.WriteLine($"log p         clean {r.CleanLogProb:0.0000}   edited {r.EditLogProb:0.0000}   delta {SignedNumber.Format(r.Delta)}" +
            (r.PatchedLayer is { } l ? $"   (patch at layer {l}, the largest |delta|)" : ""));
        Console.WriteLine($"flipped       {(r.Flipped ? "yes" : "no")} (edited argmax '{r.EditTop5[0].Token}', id {r.EditArgmax})");
        Console.WriteLine($"clean top-5   {string.Join("  ", r.CleanTop5.Select(t => $"'{t.Token}' {t.Prob:0.000}"))}");
        Console.WriteLine($"edited top-5  {string.Join("  ", r.EditTop5.Select(t => $"'{t.Token}' {t.Prob:0.000}"))}");
        if (r.Curve is { } curve)
        {
            Console.WriteLine();
            Console.WriteLine("layer   edited log p     delta   argmax");
            foreach (var p in curve)
                Console.WriteLine($"{p.Layer,5}  {p.EditLogProb,12:0.0000}  {SignedNumber.Format(p.Delta),8}  {p.EditArgmax,7}{(p.Flipped ? "  flipped" : "")}");
        }
        if (outDir is not null) Console.WriteLine($"wrote {Path.Combine(outDir, "intervene.json")}, intervene.png");
    }
}
