using LlavaMech.Checkpoints;
using LlavaMech.Cli;
using LlavaMech.Processing;

return Cli.Run(args);

namespace LlavaMech.Cli
{
    using LlavaMech.Cli.Commands;

    /// <summary>One command: option specs (for parsing and --help), its help text and what it runs.</summary>
    public sealed record CommandInfo(string Name, string Summary, CommandLine.OptionSpec[] Specs, string Description, string? Examples, Func<CommandLine, int> Handler)
    {
        /// <summary>The command that <typeparamref name="T"/> declares (a file with one command).</summary>
        public static CommandInfo Of<T>(string name, string summary) where T : ICliCommand => new(name, summary, T.Specs, T.Description, T.Examples, T.Run);
    }

    /// <summary>A file that holds one command: its options, help, examples and handler (registered with <see cref="CommandInfo.Of{T}"/>).</summary>
    public interface ICliCommand
    {
        static abstract CommandLine.OptionSpec[] Specs { get; }
        static abstract string Description { get; }
        static abstract string Examples { get; }
        static abstract int Run(CommandLine cl);
    }

    public static class Cli
    {
        public static readonly CommandInfo[] Commands =
        [
            CommandInfo.Of<ForwardCommand>("forward", "one forward pass: next-token distribution at the last position"),
            CommandInfo.Of<ExplainCommand>("explain", "the paper's tool for one image: layers, heads, patches, neurons behind the answer; PNG figures"),
            CommandInfo.Of<InterveneCommand>("intervene", "ablate heads, knock out attention or patch activations: how the answer's log-probability moves"),
            new("compare-methods", "log-increase heatmap vs raw attention, gradients, occlusion: faithfulness and time on a dataset", MethodsCommand.Specs(false), MethodsCommand.Description(false), MethodsCommand.Examples(false), MethodsCommand.RunCompare),
            new("score-methods", "attribution methods against known object boxes: pointing game, mass in object, deletion AUC", MethodsCommand.Specs(true), MethodsCommand.Description(true), MethodsCommand.Examples(true), MethodsCommand.RunScore),
            CommandInfo.Of<FindingsCommand>("findings", "the paper's findings on a dataset with object boxes: layers, heads, visual-token lens, head attention on the object"),
            CommandInfo.Of<CompareTasksCommand>("compare-tasks", "VQA vs TQA (or Llava vs Vicuna): head-map correlation, top-k overlap, layer profiles"),
            new("dataset validate", "check a manifest: every bad line with its number and reason", DatasetCommands.ValidateSpecs, DatasetCommands.ValidateDescription, "  ./llavamech dataset validate datasets/shapes-colors-mini/manifest.jsonl", DatasetCommands.Validate),
            new("dataset synth-colors", "generate the synthetic colour world (VQA with object boxes + TQA)", DatasetCommands.SynthSpecs, DatasetCommands.SynthDescription, "  ./llavamech dataset synth-colors --count 64 --seed 17 --out datasets/shapes-colors-mini", DatasetCommands.Synth),
            new("dataset import-coco", "colour questions from COCO annotations, with object boxes", DatasetCommands.CocoSpecs, DatasetCommands.CocoDescription, "  ./llavamech dataset import-coco --instances instances_val2017.json --images val2017 --out datasets/coco-colors", DatasetCommands.Coco),
            CommandInfo.Of<TrainToyCommand>("train-toy", "train the toy LLaVA of the synthetic colour world on CPU; saves a loadable Hugging Face folder, reports held-out accuracy"),
            CommandInfo.Of<InspectCommand>("inspect", "read a checkpoint's config and headers: shapes, parameters, memory (no weights loaded)"),
            CommandInfo.Of<BenchCommand>("bench", "benchmark plain vs hooked forward passes and memory over many examples"),
            new("run", "the whole dataset through the distributed pipeline on this machine: sharded, committed Parquet tables, summaries", PipelineCommands.RunSpecs, PipelineCommands.RunDescription, PipelineCommands.RunExamples, PipelineCommands.Run),
            new("silo", "run one silo of a pipeline cluster (devices, clustering, ports from config, env or options)", PipelineCommands.SiloSpecs, PipelineCommands.SiloDescription, PipelineCommands.SiloExamples, PipelineCommands.Silo),
            new("submit", "submit a pipeline job to a running cluster (--wait to follow it)", PipelineCommands.SubmitSpecs, PipelineCommands.SubmitDescription, PipelineCommands.SubmitExamples, PipelineCommands.Submit),
            new("status", "where a pipeline job stands (or the cluster's jobs)", PipelineCommands.StatusSpecs, PipelineCommands.StatusDescription, PipelineCommands.StatusExamples, PipelineCommands.Status),
            new("cancel", "cancel a pipeline job (committed shards stay; resubmit to resume)", PipelineCommands.CancelSpecs, PipelineCommands.CancelDescription, PipelineCommands.CancelExamples, PipelineCommands.Cancel),
            new("reanalyze", "nightly run of a model version: run id from the model fingerprint, resumes what is already computed for it", ReanalysisCommands.ReanalyzeSpecs, ReanalysisCommands.ReanalyzeDescription, ReanalysisCommands.ReanalyzeExamples, ReanalysisCommands.Reanalyze),
            CommandInfo.Of<BenchPipelineCommand>("bench-pipeline", "examples/s of the pipeline (1 or 2 worker processes) vs a plain loop, overhead, worker memory over a long run"),
            new("diff", "which heads and layers changed importance between two runs: tables, heatmap, Spearman", ReanalysisCommands.DiffSpecs, ReanalysisCommands.DiffDescription, ReanalysisCommands.DiffExamples, ReanalysisCommands.Diff),
            CommandInfo.Of<ServeCommand>("serve", "a web viewer over a run: overview, examples with overlays, JSON API (read-only, loopback by default)"),
            CommandInfo.Of<BenchViewerCommand>("bench-viewer", "latency of serve's pages on a large run made by replicating a real run's rows"),
        ];

        public static int Run(string[] args)
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                if (args.Length > 1) return Run([args[1], "--help"]);
                PrintOverview();
                return 0;
            }
            // Two-word commands ("dataset validate"); a bare manifest after "validate" is its --manifest.
            if (args.Length > 1 && Commands.Any(c => c.Name == $"{args[0]} {args[1]}"))
            {
                var rest = args[2..];
                if (args[1] == "validate" && rest.Length > 0 && !rest[0].StartsWith("-", StringComparison.Ordinal)) rest = ["--manifest", .. rest];
                args = [$"{args[0]} {args[1]}", .. rest];
            }
            var command = Commands.FirstOrDefault(c => c.Name == args[0]);
            if (command is null)
            {
                Console.Error.WriteLine($"llavamech: unknown command '{args[0]}'. Run ./llavamech --help for the list.");
                return 2;
            }
            try
            {
                var cl = new CommandLine(command.Name, args[1..], command.Specs);
                if (cl.HelpRequested)
                {
                    Console.WriteLine(CommandLine.Help($"./llavamech {command.Name} [options]", command.Description, command.Specs, command.Examples));
                    return 0;
                }
                return command.Handler(cl);
            }
            catch (Exception e) when (e is UsageException or LlavaMech.Model.InvalidOptionException)
            {
                Console.Error.WriteLine($"llavamech {command.Name}: {e.Message}. See ./llavamech {command.Name} --help");
                return 2;
            }
            catch (Exception e)
            {
                return ReportError(command.Name, e);
            }
        }

        /// <summary>Set to 1 to see the stack trace of an error.</summary>
        public const string DebugVariable = "LLAVAMECH_DEBUG";

        internal static bool Debug => Environment.GetEnvironmentVariable(DebugVariable) is "1" or "true";

        /// <summary>
        /// Errors of the user's input or environment (bad checkpoint, file, image, manifest, option combination) print
        /// their message; anything else prints its type and message and how to get the trace. Never a stack trace
        /// unless LLAVAMECH_DEBUG=1. Exit code 1.
        /// </summary>
        internal static int ReportError(string command, Exception e)
        {
            while (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerException!;
            if (e is UsageException or LlavaMech.Model.InvalidOptionException)
            {
                Console.Error.WriteLine($"llavamech {command}: {e.Message}. See ./llavamech {command} --help");
                return 2;
            }
            bool known = e is CheckpointException or ProcessingException or IOException or UnauthorizedAccessException or ArgumentException
                or InvalidOperationException or NotSupportedException or FormatException or OverflowException or InvalidDataException
                or LlavaMech.Pipeline.JobPreparationException or LlavaMech.Storage.StorageException or LlavaMech.Pipeline.TlsConfigurationException;
            Console.Error.WriteLine(known
                ? $"llavamech {command}: error: {e.Message}"
                : $"llavamech {command}: internal error ({e.GetType().Name}): {e.Message}");
            if (Debug) Console.Error.WriteLine(e.ToString());
            else if (!known) Console.Error.WriteLine($"llavamech {command}: run with {DebugVariable}=1 for the stack trace");
            return 1;
        }

        private static void PrintOverview()
        {
            Console.WriteLine("""
                llavamech: mechanistic interpretability of LLaVA-style models
                (log-probability-increase attribution of layers, heads, positions and neurons; Yu & Ananiadou, arXiv 2411.10950)

                usage: ./llavamech <command> [options]
                       ./llavamech <command> --help     what a command does, its options and examples

                commands:
                """);
            foreach (var c in Commands) Console.WriteLine($"  {c.Name,-22} {c.Summary}");
            Console.WriteLine("""
                  test                   (the ./llavamech script) build and run the whole test suite

                Commands that run a model take --device (cpu, cuda, cuda:N, auto), --dtype and
                --libtorch DIR (CUDA through an installed PyTorch's libtorch; or set LLAVAMECH_LIBTORCH).
                """);
        }
    }
}
